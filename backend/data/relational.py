"""`relational`: two shapes far apart in one 32×32 image, labelled "same" or "different".

The label depends on content in two places at least `min_distance` apart (≥ 3.5 patches of the zoo's 4-px
patch grid), so no single local window decides it: a model has to bring two distant patches together. This
is the same/different task of Fleuret et al. (PNAS 2011, SVRT problem 1) and Kim, Ricci & Serre
("Not-So-CLEVR", Interface Focus 2018), drawn with the `shapes` renderer (`posed_masks`).

Kept deliberately easy so a tiny model can learn it on a CPU: four shape classes, upright (no rotation),
both shapes in one colour on a random background, sizes jittered independently. Classes are balanced;
"different" pairs are drawn uniformly from the ordered pairs of distinct shapes.
"""

from __future__ import annotations

import numpy as np

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.shapes import SHAPE_FNS, SUPERSAMPLE, colours_apart, posed_masks, random_colours
from backend.data.splits import Split, split_rng, to_uint8
from backend.data.textures import _grid

RELATIONAL_CLASSES: tuple[str, ...] = ("different", "same")
RELATIONAL_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
IMAGE_SIZE = 32
SCALE = (0.26, 0.32)  # shape radius as a fraction of the half-width (4.2-5.1 px)
MIN_DISTANCE = 0.9  # between the two centres, in half-widths (14.4 px = 3.6 patches of 4 px)
NOISE = 0.02
DEFAULT_SIZES = {"train": 20000, "val": 2000, "test": 2000}


def _centres(n: int, rng: np.random.Generator, margin: np.ndarray) -> np.ndarray:
    """(n, 2, 2) centres (x, y) in [-1, 1], each inside its margin, pairs at least MIN_DISTANCE apart."""
    out = np.zeros((n, 2, 2), np.float32)
    todo = np.arange(n)
    while len(todo):
        lim = (1 - margin[todo])[:, :, None]  # (k, 2, 1)
        c = (rng.uniform(-1, 1, (len(todo), 2, 2)) * lim).astype(np.float32)
        ok = np.linalg.norm(c[:, 0] - c[:, 1], axis=1) >= MIN_DISTANCE
        out[todo[ok]] = c[ok]
        todo = todo[~ok]
    return out


def generate(n: int, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Split:
    """n balanced, shuffled images; meta holds both shapes' classes (indices into RELATIONAL_SHAPES),
    centres (x, y in [-1, 1]) and scales."""
    k = len(RELATIONAL_SHAPES)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)  # 1 = same
    first = rng.integers(0, k, n)
    other = (first + rng.integers(1, k, n)) % k  # uniform over the k - 1 other shapes
    second = np.where(labels == 1, first, other)
    kinds = np.stack([first, second], 1)  # (n, 2)
    scale = rng.uniform(*SCALE, (n, 2)).astype(np.float32)
    centres = _centres(n, rng, scale)
    ss = size * SUPERSAMPLE
    x, y = _grid(ss)
    fns = [SHAPE_FNS[s] for s in RELATIONAL_SHAPES]
    masks = np.zeros((n, ss, ss), np.float32)
    for j in range(2):
        masks = np.maximum(
            masks,
            posed_masks(
                kinds[:, j],
                fns,
                x,
                y,
                centres[:, j, 0],
                centres[:, j, 1],
                scale[:, j],
                np.zeros(n, np.float32),
            ),
        )
    fg = random_colours(n, rng)
    bg = colours_apart(fg, 0.4, rng)
    img = masks[..., None] * fg[:, None, None] + (1 - masks[..., None]) * bg[:, None, None]
    img = img.reshape(n, size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(2, 4))  # anti-alias
    img = img + NOISE * rng.standard_normal(img.shape).astype(np.float32)
    meta = {"shapes": kinds, "centres": centres, "scales": scale}
    return Split(to_uint8(img), labels, RELATIONAL_CLASSES, meta)


def load_relational(split: str, seed: int = 0, n: int | None = None) -> Split:
    """One split; the same (split, seed, n) always gives the same images."""
    return generate(DEFAULT_SIZES[split] if n is None else n, split_rng(seed, split))


register_dataset(
    DatasetInfo(
        "relational",
        "Two shapes at random positions, labelled same or different: the label needs two distant patches",
        RELATIONAL_CLASSES,
        lambda split, n, seed: load_relational(split, seed=seed, n=n),
        source="backend/data/relational.py",
    )
)
