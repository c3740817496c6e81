"""`clevr-lite`: 32×32 scenes of 1–3 objects (shape × colour × size) with templated questions and captions.

A procedural stand-in for CLEVR (Johnson et al., CVPR 2017) and for the POPE-style probes of LVLM
hallucination (Li et al., EMNLP 2023), built for the lvlm-debias lab (METHODS §7, Zhang et al.,
arXiv 2403.05262). Objects sit in three columns (left, middle, right), so a caption lists them left to right.

The training data carries a deliberate language prior; the test split is balanced against it:

- "is there a …?" is answered *yes* 80 % of the time in training (50 % in the balanced test);
- shape–colour co-occurrence: in training a ball is red 90 % of the time and a cone yellow 90 % of the
  time (cubes take any colour); in the balanced test every colour is equally likely for every shape;
- half of the balanced test's "no" questions are adversarial in POPE's sense: they name the prior colour
  of a shape that is in the scene in another colour ("is there a red ball?" beside a blue ball).

Small objects are 2 px in radius with jittered colours, so the image evidence is weaker exactly where the
prior is strong. Images, object tables and questions are deterministic by (seed, split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.shapes import SUPERSAMPLE, posed_masks
from backend.data.splits import Split, split_rng, to_uint8
from backend.data.textures import _grid

SHAPES: tuple[str, ...] = ("cube", "ball", "cone")
SHAPE_DRAWN = {"cube": "square", "ball": "circle", "cone": "triangle"}  # flat 2-D stand-ins
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
SIZES: tuple[str, ...] = ("small", "large")
COUNTS: tuple[str, ...] = ("one", "two", "three")
RGB = np.array([[0.85, 0.15, 0.12], [0.15, 0.72, 0.2], [0.2, 0.35, 0.95], [0.92, 0.82, 0.12]], np.float32)
# Training prior: shape -> (colour it takes, how often). Cubes have none.
PRIOR_COLOR: dict[str, tuple[str, float]] = {"ball": ("red", 0.9), "cone": ("yellow", 0.9)}
PRIOR_YES = 0.8  # training P(yes) for "is there a ...?"
RADIUS = {"small": 0.13, "large": 0.28}  # in half-widths: about 2 px and 4.5 px
COLUMNS = np.array([-0.62, 0.0, 0.62], np.float32)
IMAGE_SIZE = 32
NOISE = 0.03
MAX_OBJECTS = 3
DEFAULT_SIZES = {"train": 20000, "val": 2000, "test": 2000}
# Question kinds and how often each is asked in training.
KINDS: tuple[str, ...] = ("exists", "exists_shape", "color", "count", "caption")
TRAIN_KIND_P = np.array([0.35, 0.1, 0.2, 0.1, 0.25])
# The lab's suggested templates (the model knows exactly these words).
TEMPLATES: tuple[str, ...] = (
    "is there a red ball?",
    "is there a yellow cone?",
    "what color is the ball?",
    "is there a cube?",
    "how many objects are there?",
    "describe the scene.",
)


def prior(split: str) -> bool:
    """Training and validation carry the language prior; the test split is balanced against it."""
    return split != "test"


def generate(n: int, rng: np.random.Generator, with_prior: bool, size: int = IMAGE_SIZE) -> Split:
    """n scenes. meta["objects"] is (n, 3, 4) int: shape, colour, size, column per object (-1 rows unused),
    sorted left to right; labels are the object count minus one."""
    count = rng.integers(1, MAX_OBJECTS + 1, n)
    objects = np.full((n, MAX_OBJECTS, 4), -1, np.int64)
    for i in range(n):
        cols = np.sort(rng.choice(3, count[i], replace=False))
        for j, c in enumerate(cols):
            s = int(rng.integers(len(SHAPES)))
            objects[i, j] = (s, _colour_for(SHAPES[s], rng, with_prior), rng.integers(len(SIZES)), c)
    return Split(render(objects, rng, size), count - 1, COUNTS, {"objects": objects})


def _colour_for(shape: str, rng: np.random.Generator, with_prior: bool) -> int:
    if with_prior and shape in PRIOR_COLOR:
        colour, p = PRIOR_COLOR[shape]
        if rng.random() < p:
            return COLORS.index(colour)
        others = [i for i, c in enumerate(COLORS) if c != colour]
        return int(rng.choice(others))
    return int(rng.integers(len(COLORS)))


def render(objects: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 (n, size, size, 3) scenes: a dark random-grey background, jittered colours, pixel noise."""
    from backend.data.shapes import SHAPE_FNS

    n = len(objects)
    ss = size * SUPERSAMPLE
    x, y = _grid(ss)
    fns = [SHAPE_FNS[SHAPE_DRAWN[s]] for s in SHAPES]
    bg = rng.uniform(0.12, 0.32, (n, 1, 1, 1)).astype(np.float32)
    img = np.broadcast_to(bg, (n, ss, ss, 3)).copy()
    for j in range(MAX_OBJECTS):
        o = objects[:, j]
        idx = np.flatnonzero(o[:, 0] >= 0)
        if len(idx) == 0:
            continue
        r = np.array([RADIUS[SIZES[k]] for k in o[idx, 2]], np.float32)
        cx = COLUMNS[o[idx, 3]] + rng.uniform(-0.08, 0.08, len(idx)).astype(np.float32)
        cy = rng.uniform(-0.6, 0.6, len(idx)).astype(np.float32)
        masks = posed_masks(o[idx, 0], fns, x, y, cx, cy, r, np.zeros(len(idx), np.float32))
        colour = np.clip(RGB[o[idx, 1]] + rng.uniform(-0.08, 0.08, (len(idx), 3)), 0, 1).astype(np.float32)
        m = masks[..., None]
        img[idx] = m * colour[:, None, None] + (1 - m) * img[idx]
    img = img.reshape(n, size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(2, 4))
    img = img + NOISE * rng.standard_normal(img.shape).astype(np.float32)
    return to_uint8(img)


# --- questions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str  # one of KINDS
    # exists questions: whether the named object is absent and the question adversarial (prior colour)
    absent: bool = False
    adversarial: bool = False


def scene_objects(row: np.ndarray) -> list[tuple[str, str, str]]:
    """(shape, colour, size) words of one scene's objects, left to right."""
    return [(SHAPES[o[0]], COLORS[o[1]], SIZES[o[2]]) for o in row if o[0] >= 0]


def caption(row: np.ndarray) -> str:
    return " and ".join(f"a {size} {colour} {shape}" for shape, colour, size in scene_objects(row))


def ask(
    row: np.ndarray, kind: str, rng: np.random.Generator, with_prior: bool, want_yes: bool | None = None
) -> QA:
    """One question of the given kind about one scene (object table row (3, 4))."""
    objs = scene_objects(row)
    if kind == "exists":
        present = {(c, s) for s, c, _ in objs}
        yes = want_yes if want_yes is not None else rng.random() < (PRIOR_YES if with_prior else 0.5)
        if yes:
            colour, shape = sorted(present)[rng.integers(len(present))]
            return QA(f"is there a {colour} {shape}?", "yes", kind)
        absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
        adversarial = [
            (PRIOR_COLOR[s][0], s)
            for _, s in present
            if s in PRIOR_COLOR and (PRIOR_COLOR[s][0], s) not in present
        ]
        adv = not with_prior and bool(adversarial) and rng.random() < 0.5
        pool = sorted(set(adversarial)) if adv else absent
        colour, shape = pool[rng.integers(len(pool))]
        return QA(f"is there a {colour} {shape}?", "no", kind, absent=True, adversarial=adv)
    if kind == "exists_shape":
        present_shapes = sorted({s for s, _, _ in objs})
        missing = [s for s in SHAPES if s not in present_shapes]
        yes = want_yes if want_yes is not None else rng.random() < (PRIOR_YES if with_prior else 0.5)
        if yes or not missing:
            return QA(f"is there a {present_shapes[rng.integers(len(present_shapes))]}?", "yes", kind)
        return QA(f"is there a {missing[rng.integers(len(missing))]}?", "no", kind, absent=True)
    if kind == "color":
        single = [s for s in SHAPES if sum(o[0] == s for o in objs) == 1]
        if single:
            shape = single[rng.integers(len(single))]
            colour = next(c for s, c, _ in objs if s == shape)
            return QA(f"what color is the {shape}?", colour, kind)
        kind = "count"  # every shape is repeated: ask the count instead
    if kind == "count":
        return QA("how many objects are there?", COUNTS[len(objs) - 1], "count")
    if kind == "caption":
        return QA("describe the scene.", caption(row), kind)
    raise ValueError(f"unknown question kind {kind!r}")


def training_questions(objects: np.ndarray, rng: np.random.Generator) -> list[QA]:
    """One question per scene, kinds drawn with TRAIN_KIND_P, existence answered yes 80 % of the time."""
    kinds = rng.choice(len(KINDS), len(objects), p=TRAIN_KIND_P)
    return [ask(row, KINDS[k], rng, with_prior=True) for row, k in zip(objects, kinds, strict=True)]


def balanced_questions(objects: np.ndarray, seed: int) -> list[QA]:
    """The balanced evaluation set: scenes cycle through the kinds, existence yes/no alternates exactly."""
    rng = np.random.default_rng([int(seed), 99])
    out = []
    for i, row in enumerate(objects):
        kind = ("exists", "exists", "color", "exists_shape", "count", "caption")[i % 6]
        out.append(
            ask(
                row,
                kind,
                rng,
                with_prior=False,
                want_yes=(i // 6) % 2 == 0 if kind != "exists" else i % 2 == 0,
            )
        )
    return out


def load_clevr_lite(split: str, n: int | None = None, seed: int = 0) -> Split:
    n = DEFAULT_SIZES[split] if n is None else n
    return generate(n, split_rng(seed, split), with_prior=prior(split))


register_dataset(
    DatasetInfo(
        name="clevr-lite",
        description="Scenes of 1-3 objects (cube/ball/cone × 4 colours × 2 sizes) for VQA and captions; "
        "training carries a language prior (yes 80 %, red balls and yellow cones 90 %), test is balanced.",
        class_names=COUNTS,  # labels are the object count; the questions come from `ask`
        loader=load_clevr_lite,
        source="procedural",
    )
)
