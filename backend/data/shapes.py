"""`shapes`: eight procedurally drawn shape classes at 32×32 RGB, deterministic by seed.

Colour, scale, rotation, position and background vary at random. Half of the images (by default) fill
their shape with the texture family aligned with their class (circle ↔ stripes, square ↔ checker, ...),
the other half with a flat colour. Shape is therefore always sufficient, texture sometimes: like
ImageNet, where both cues agree, which is what makes the cue-conflict test of Geirhos et al.
(ICLR 2019, arXiv 1811.12231) meaningful for models trained here (see `cue_conflict.py`).

Rendering is vectorised numpy: shapes are evaluated as implicit functions on a 2×-supersampled grid and
box-filtered down (anti-aliasing), so 10k images take a couple of seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.splits import Split, split_rng, to_uint8
from backend.data.textures import TEXTURES, _grid, texture

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "crescent",
    "arrow",
)
IMAGE_SIZE = 32
SUPERSAMPLE = 2
MEAN = (0.0, 0.0, 0.0)  # models take [0, 1] pixels and standardise each image themselves (see zoo.py)
STD = (1.0, 1.0, 1.0)


def _polygon(u: np.ndarray, v: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over pixels; pts (K, 2) in shape coordinates."""
    inside = np.zeros(u.shape, bool)
    for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        if y1 == y2:
            continue
        crosses = (y1 > v) != (y2 > v)
        inside ^= crosses & (u < (x2 - x1) * (v - y1) / (y2 - y1) + x1)
    return inside


def _regular(k: int, radius: float, inner: float | None = None) -> np.ndarray:
    """Vertices of a regular k-gon (or a k-pointed star with the given inner radius), pointing up."""
    if inner is None:
        t = -np.pi / 2 + 2 * np.pi * np.arange(k) / k
        return np.stack([radius * np.cos(t), radius * np.sin(t)], 1)
    t = -np.pi / 2 + np.pi * np.arange(2 * k) / k
    r = np.where(np.arange(2 * k) % 2 == 0, radius, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


_ARROW = np.array(
    [[-0.9, -0.22], [0.1, -0.22], [0.1, -0.62], [0.92, 0.0], [0.1, 0.62], [0.1, 0.22], [-0.9, 0.22]]
)
_TRIANGLE = _regular(3, 0.98) + np.array([0.0, 0.18])  # centre the bounding box
_STAR = _regular(5, 1.0, 0.42)

# Each shape fits in the unit disc of its own coordinates (u, v); sizes chosen for similar visual weight.
SHAPE_FNS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda u, v: u**2 + v**2 <= 0.8**2,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.66,
    "triangle": lambda u, v: _polygon(u, v, _TRIANGLE),
    "star": lambda u, v: _polygon(u, v, _STAR),
    "cross": lambda u, v: (
        ((np.abs(u) <= 0.26) & (np.abs(v) <= 0.9)) | ((np.abs(v) <= 0.26) & (np.abs(u) <= 0.9))
    ),
    "ring": lambda u, v: (u**2 + v**2 <= 0.9**2) & (u**2 + v**2 >= 0.5**2),
    "crescent": lambda u, v: (u**2 + v**2 <= 0.88**2) & ((u - 0.42) ** 2 + v**2 >= 0.7**2),
    "arrow": lambda u, v: _polygon(u, v, _ARROW),
}


@dataclass(frozen=True)
class ShapesConfig:
    """Generation parameters (defaults are what the zoo was trained on)."""

    size: int = IMAGE_SIZE
    scale: tuple[float, float] = (0.45, 0.85)  # shape radius as a fraction of the half-width
    texture_fraction: float = 0.5  # fraction of images whose fill is their class's texture
    min_colour_distance: float = 0.4  # RGB distance between fill and background, so shapes stay visible
    noise: float = 0.02  # pixel noise added at the end


def random_colours(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((n, 3)).astype(np.float32)


def colours_apart(ref: np.ndarray, min_dist: float, rng: np.random.Generator) -> np.ndarray:
    """For each reference colour, a random colour at least min_dist away (rejection sampling, vectorised)."""
    out = random_colours(len(ref), rng)
    bad = np.linalg.norm(out - ref, axis=1) < min_dist
    while bad.any():
        out[bad] = random_colours(int(bad.sum()), rng)
        bad = np.linalg.norm(out - ref, axis=1) < min_dist
    return out


def shape_masks(
    shape_ids: np.ndarray, rng: np.random.Generator, size: int, scale: tuple[float, float]
) -> np.ndarray:
    """Soft masks (n, size·SS, size·SS) of the given shape classes at random scale, rotation, position."""
    n = len(shape_ids)
    ss = size * SUPERSAMPLE
    x, y = _grid(ss)
    s = rng.uniform(*scale, n).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    cx = rng.uniform(-1, 1, n).astype(np.float32) * (1 - s)
    cy = rng.uniform(-1, 1, n).astype(np.float32) * (1 - s)
    return posed_masks(shape_ids, [SHAPE_FNS[name] for name in SHAPE_CLASSES], x, y, cx, cy, s, theta)


def posed_masks(
    kinds: np.ndarray,
    fns: Sequence[Callable[[np.ndarray, np.ndarray], np.ndarray]],
    x: np.ndarray,
    y: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    scale: np.ndarray,
    theta: np.ndarray,
) -> np.ndarray:
    """Masks (n, H, W): item i draws fns[kinds[i]] in its own frame (centre, scale, rotation) on grid x, y."""
    masks = np.zeros((len(kinds), *x.shape), np.float32)
    for k, fn in enumerate(fns):
        idx = np.flatnonzero(kinds == k)
        if len(idx) == 0:
            continue
        c, si = np.cos(theta[idx])[:, None, None], np.sin(theta[idx])[:, None, None]
        dx, dy = x - cx[idx, None, None], y - cy[idx, None, None]
        u = (dx * c + dy * si) / scale[idx, None, None]
        v = (-dx * si + dy * c) / scale[idx, None, None]
        masks[idx] = fn(u, v)
    return masks


def textures_for(texture_ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, size, size) patterns in [0, 1]; rows with texture id -1 get zeros (flat fill)."""
    out = np.zeros((len(texture_ids), size, size), np.float32)
    for k, kind in enumerate(TEXTURES):
        idx = np.flatnonzero(texture_ids == k)
        out[idx] = texture(kind, len(idx), size, rng)
    return out


def render(
    shape_ids: np.ndarray,
    texture_ids: np.ndarray,
    rng: np.random.Generator,
    cfg: ShapesConfig = ShapesConfig(),
    *,
    full_frame: bool = False,
) -> np.ndarray:
    """Draw images: shape `shape_ids[i]` filled with texture `texture_ids[i]` (-1 = flat colour).

    full_frame=True fills the whole image with the texture (the texture-only control of METHODS §5).
    Returns uint8 (n, size, size, 3).
    """
    n, ss = len(shape_ids), cfg.size * SUPERSAMPLE
    mask = (
        np.ones((n, ss, ss), np.float32) if full_frame else shape_masks(shape_ids, rng, cfg.size, cfg.scale)
    )
    pattern = textures_for(np.asarray(texture_ids), ss, rng)[..., None]  # (n, ss, ss, 1)
    col_a = random_colours(n, rng)
    col_b = colours_apart(col_a, 0.5, rng)  # the texture's two colours, well apart so it stays visible
    flat = (np.asarray(texture_ids) < 0)[:, None]
    col_b = np.where(flat, col_a, col_b)
    fill = col_a[:, None, None] * (1 - pattern) + col_b[:, None, None] * pattern  # (n, ss, ss, 3)
    background = colours_apart((col_a + col_b) / 2, cfg.min_colour_distance, rng)[:, None, None]
    img = mask[..., None] * fill + (1 - mask[..., None]) * background
    img = img.reshape(n, cfg.size, SUPERSAMPLE, cfg.size, SUPERSAMPLE, 3).mean(axis=(2, 4))  # anti-alias
    img = img + cfg.noise * rng.standard_normal(img.shape).astype(np.float32)
    return to_uint8(img)


def generate(
    n: int, rng: np.random.Generator, cfg: ShapesConfig = ShapesConfig(), chunk: int = 2048
) -> Split:
    """n balanced, shuffled images; meta['textured'] says which ones carry their class texture."""
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))
    textured = rng.random(n) < cfg.texture_fraction
    tex = np.where(textured, labels, -1)
    images = (
        np.concatenate(
            [render(labels[i : i + chunk], tex[i : i + chunk], rng, cfg) for i in range(0, n, chunk)]
        )
        if n
        else np.zeros((0, cfg.size, cfg.size, 3), np.uint8)
    )
    return Split(images, labels.astype(np.int64), SHAPE_CLASSES, {"textured": textured, "texture": tex})


DEFAULT_SIZES = {"train": 20000, "val": 2000, "test": 2000}


def load_shapes(split: str, seed: int = 0, n: int | None = None, cfg: ShapesConfig = ShapesConfig()) -> Split:
    """One split of `shapes`; the same (split, seed, n) always gives the same images."""
    return generate(DEFAULT_SIZES[split] if n is None else n, split_rng(seed, split), cfg)


register_dataset(
    DatasetInfo(
        "shapes",
        "Procedural 32×32 RGB shapes, 8 classes, random colours, some filled with their class texture",
        SHAPE_CLASSES,
        lambda split, n, seed: load_shapes(split, seed=seed, n=n),
        source="backend/data/shapes.py",
    )
)


RARE_KEEP = 0.1  # shapes-rare keeps this fraction of the textured training images


def load_shapes_rare(split: str, seed: int = 0, n: int | None = None) -> Split:
    """`shapes` with a rare mode: in the training split, texture-filled images are 10× rarer than in
    `shapes` (every flat-filled image is kept, one textured image in ten). Validation and test splits are
    plain `shapes`, so at test time the textured images are the rare mode, far from most training data:
    the set-up METHODS §4 suggests for seeing proximity bias in calibration.
    """
    full = load_shapes(split, seed=seed, n=n)
    if split != "train":
        return full
    keep = ~full.meta["textured"] | (split_rng(seed + 31, split).random(len(full)) < RARE_KEEP)
    return full.subset(np.flatnonzero(keep))


register_dataset(
    DatasetInfo(
        "shapes-rare",
        "shapes whose training split has texture-filled images 10× rarer (the rare mode); "
        "validation and test as in shapes",
        SHAPE_CLASSES,
        lambda split, n, seed: load_shapes_rare(split, seed=seed, n=n),
        source="backend/data/shapes.py",
    )
)
