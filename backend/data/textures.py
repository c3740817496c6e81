"""Procedural textures for the shape/texture cue experiments (Geirhos et al., ICLR 2019, arXiv 1811.12231).

Eight texture families, one per shape class, each drawn with random phase, orientation and scale so the
texture *family* (not one fixed image) is the cue. Three of them are crops of scikit-image's `brick`,
`grass` and `gravel` photographs (shipped inside the wheel, nothing downloaded); the others are
procedural (stripes, checkerboard, dot lattice, band-pass noise, zigzag), following METHODS §5.

All generators are vectorised over a batch: `texture(kind, n, size, rng) -> (n, size, size)` in [0, 1].
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

TEXTURES = ("stripes", "checker", "dots", "noise", "brick", "grass", "gravel", "zigzag")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]; (size, size) each, x to the right, y down."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")
    return x, y


def _rotated(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-image randomly rotated and shifted coordinates, (n, size, size) each."""
    x, y = _grid(size)
    phi = rng.uniform(0, np.pi, n).astype(np.float32)[:, None, None]
    shift = rng.uniform(-1, 1, (2, n)).astype(np.float32)[..., None, None]
    sx, sy = shift[0], shift[1]
    xr = x * np.cos(phi) + y * np.sin(phi) + sx
    yr = -x * np.sin(phi) + y * np.cos(phi) + sy
    return xr, yr


def _stretch(p: np.ndarray) -> np.ndarray:
    """Per-image contrast stretch to [0, 1] using the 2nd/98th percentiles (robust to outliers)."""
    lo = np.percentile(p, 2, axis=(1, 2), keepdims=True)
    hi = np.percentile(p, 98, axis=(1, 2), keepdims=True)
    return np.clip((p - lo) / np.maximum(hi - lo, 1e-6), 0, 1).astype(np.float32)


@lru_cache(maxsize=4)
def _photo(name: str) -> np.ndarray:
    from skimage import data

    img: np.ndarray = getattr(data, name)()
    return img.astype(np.float32) / 255.0  # (512, 512)


def _photo_crops(name: str, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random crops, block-averaged down so a 32-px image shows a few 'bricks' / 'grass blades'."""
    img = _photo(name)
    factor = 4 if size <= 64 else 2
    crop = size * factor
    ys = rng.integers(0, img.shape[0] - crop, n)
    xs = rng.integers(0, img.shape[1] - crop, n)
    idx = np.arange(crop)
    crops = img[(ys[:, None] + idx)[:, :, None], (xs[:, None] + idx)[:, None, :]]  # (n, crop, crop)
    crops = crops.reshape(n, size, factor, size, factor).mean(axis=(2, 4))
    flip = rng.random(n) < 0.5
    crops[flip] = crops[flip][:, :, ::-1]
    return _stretch(crops)


def texture(kind: str, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """n images of one texture family, (n, size, size) float32 in [0, 1]."""
    if n == 0:
        return np.zeros((0, size, size), np.float32)
    if kind in ("brick", "grass", "gravel"):
        return _photo_crops(kind, n, size, rng)
    xr, yr = _rotated(n, size, rng)
    freq = rng.uniform(0.85, 1.15, n).astype(np.float32)[:, None, None]
    if kind == "stripes":  # ~8 cycles across the image
        p = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * freq * xr)
    elif kind == "checker":  # squares ~4 px on a 32-px image
        p = (np.sign(np.sin(np.pi * 4.0 * freq * xr) * np.sin(np.pi * 4.0 * freq * yr)) + 1) / 2
    elif kind == "dots":  # a lattice of round dots
        period = 0.42 * freq
        dx = np.mod(xr, period) - period / 2
        dy = np.mod(yr, period) - period / 2
        p = (dx**2 + dy**2 < (0.32 * period) ** 2).astype(np.float32)
    elif kind == "zigzag":  # triangle-wave stripes
        tri = np.abs(np.mod(xr * 3.0 * freq, 1.0) - 0.5) * 2 - 0.5  # in [-0.5, 0.5]
        p = 0.5 + 0.5 * np.sin(2 * np.pi * (3.0 * freq * yr + 0.5 * tri))
        p = (p > 0.5).astype(np.float32)
    elif kind == "noise":  # band-pass (difference of Gaussians) white noise, ~3-px blobs
        white = rng.standard_normal((n, size, size)).astype(np.float32)
        sigma = size / 32.0
        p = gaussian_filter(white, (0, sigma, sigma)) - gaussian_filter(white, (0, 3 * sigma, 3 * sigma))
        return _stretch(p)
    else:
        raise KeyError(f"unknown texture {kind!r}; known: {', '.join(TEXTURES)}")
    return p.astype(np.float32)
