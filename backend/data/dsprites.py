"""`dsprites-lite`: a procedural 32×32 analogue of dSprites (Matthey et al. 2017) for shortcut-cue
experiments in the style of WCST-ML (Scimeca et al., ICLR 2022, arXiv 2110.03095; METHODS §9).

Five cues, three values each: shape {square, ellipse, heart}, colour {red, green, blue},
scale {small, medium, large}, orientation {0°, 30°, 60°}, x-position {left, centre, right}.
- Diagonal training set: every cue equals the label (sample y has value y on all cues).
- Off-diagonal test set for cue k: the label is cue k's value; the other cues are random.
"""

from __future__ import annotations

import numpy as np

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.shapes import posed_masks
from backend.data.splits import Split, split_rng, to_uint8
from backend.data.textures import _grid

CUES = ("shape", "colour", "scale", "orientation", "position")
VALUES = 3
SPRITE_SHAPES = ("square", "ellipse", "heart")
COLOURS = np.array([[0.9, 0.15, 0.15], [0.15, 0.8, 0.2], [0.2, 0.35, 0.95]], np.float32)
SCALES = np.array([0.3, 0.42, 0.55], np.float32)
ANGLES = np.deg2rad([0.0, 30.0, 60.0]).astype(np.float32)
X_POS = np.array([-0.45, 0.0, 0.45], np.float32)
CLASS_NAMES: tuple[str, ...] = ("0", "1", "2")
SUPERSAMPLE = 2


def _sprite(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if kind == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if kind == 1:
        return (u / 0.95) ** 2 + (v / 0.55) ** 2 <= 1
    # heart: the classic implicit curve (x² + y² − 1)³ − x² y³ ≤ 0, y up
    x, y = u * 1.25, -v * 1.25 + 0.15
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def render_sprites(factors: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """factors (n, 5) ints in {0,1,2} in CUES order -> uint8 (n, size, size, 3) on black."""
    n, ss = len(factors), size * SUPERSAMPLE
    x, y = _grid(ss)
    jitter = rng.uniform(-0.08, 0.08, (n, 2)).astype(np.float32)  # small y/x jitter keeps it non-trivial
    cx = X_POS[factors[:, 4]] + jitter[:, 0]
    cy = jitter[:, 1]
    s, a = SCALES[factors[:, 2]], ANGLES[factors[:, 3]]
    fns = [lambda u, v, k=k: _sprite(k, u, v) for k in range(len(SPRITE_SHAPES))]
    masks = posed_masks(factors[:, 0], fns, x, y, cx, cy, s, a)
    img = masks[..., None] * COLOURS[factors[:, 1]][:, None, None]
    img = img.reshape(n, size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(2, 4))
    return to_uint8(img)


def load_dsprites(kind: str = "diagonal", n: int = 3000, seed: int = 0, split: str = "train") -> Split:
    """kind 'diagonal' (all cues = label) or 'off-<cue>' (label = that cue, others random).

    meta holds every factor, so any cue can be scored against the predictions.
    """
    if kind != "diagonal" and not (kind.startswith("off-") and kind[4:] in CUES):
        raise KeyError(
            f"unknown dsprites-lite kind {kind!r}; use 'diagonal' or 'off-<cue>' with cue in {CUES}"
        )
    rng = split_rng(seed + 7919 * (0 if kind == "diagonal" else 1 + CUES.index(kind[4:])), split)
    labels = rng.permutation(np.arange(n) % VALUES)
    if kind == "diagonal":
        factors = np.repeat(labels[:, None], len(CUES), axis=1)
    elif kind.startswith("off-") and kind[4:] in CUES:
        factors = rng.integers(0, VALUES, (n, len(CUES)))
        factors[:, CUES.index(kind[4:])] = labels
    else:
        raise KeyError(
            f"unknown dsprites-lite kind {kind!r}; use 'diagonal' or 'off-<cue>' with cue in {CUES}"
        )
    images = render_sprites(factors, rng)
    meta = {cue: factors[:, i] for i, cue in enumerate(CUES)}
    return Split(images, labels.astype(np.int64), CLASS_NAMES, meta)


register_dataset(
    DatasetInfo(
        "dsprites-lite",
        "Procedural sprites whose five cues (shape, colour, scale, angle, position) all equal the label",
        CLASS_NAMES,
        lambda split, n, seed: load_dsprites("diagonal", n=3000 if n is None else n, seed=seed, split=split),
        source="backend/data/dsprites.py",
    )
)
