"""Cue-separating image transforms and attack helpers for the shape-bias lab (METHODS §5).

- `patch_shuffle`: texture-only version of an image. Cutting it into a grid of patches and permuting them
  keeps local texture statistics and destroys the global outline (the "texture" control of Geirhos et
  al. 2019 is a crop of texture; shuffling is the standard way to make one from an arbitrary image).
- `silhouette`: shape-only version. The background colour is the median of the border pixels (as the
  zoo's `ForegroundStandardize` estimates it); pixels far from it by Otsu's threshold on the colour
  distance are foreground, filled with one flat colour: the flat-filled silhouettes of the cue-conflict
  shape-only control.
- `pair_matrix`: for every (shape, texture) pair, the fraction of shape decisions among shape+texture
  decisions, the confusion view of the lab.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.filters import threshold_otsu
from torch import nn

from backend.labs.saliency import prepare_for_backward
from backend.train.classifier import pgd_linf


def patch_shuffle(image: np.ndarray, grid: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, C) image cut into grid × grid patches, permuted (never the identity when grid > 1)."""
    h, w = image.shape[:2]
    ph, pw = h // grid, w // grid
    patches = [image[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] for i in range(grid) for j in range(grid)]
    order = rng.permutation(len(patches))
    while len(patches) > 1 and (order == np.arange(len(patches))).all():
        order = rng.permutation(len(patches))
    out = image.copy()
    for k, src in enumerate(order):
        i, j = divmod(k, grid)
        out[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = patches[src]
    return out


FOREGROUND = np.array([0.15, 0.15, 0.2], np.float32)
BACKGROUND = np.array([0.85, 0.85, 0.85], np.float32)


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose colour is far from the border median (Otsu threshold on the distance)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    dist = np.linalg.norm(image - np.median(border, axis=0), axis=-1)
    if float(dist.max() - dist.min()) < 1e-6:
        return np.zeros(dist.shape, bool)
    return np.asarray(dist > threshold_otsu(dist))


def silhouette(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> the foreground as a flat dark shape on a flat light background."""
    mask = foreground_mask(image)[..., None]
    return np.where(mask, FOREGROUND, BACKGROUND).astype(np.float32)


def pair_matrix(
    pred: np.ndarray, shape: np.ndarray, texture: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, k) matrices over (shape row, texture column): shape decisions, texture decisions, and
    n_s / (n_s + n_t) (NaN on the diagonal and where neither cue was chosen)."""
    n_s = np.zeros((k, k))
    n_t = np.zeros((k, k))
    np.add.at(n_s, (shape, texture), pred == shape)
    np.add.at(n_t, (shape, texture), (pred == texture) & (shape != texture))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = n_s / (n_s + n_t)
    frac[np.eye(k, dtype=bool)] = np.nan
    return n_s, n_t, frac


def attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int = 0
) -> torch.Tensor:
    """L∞ PGD (the project's `pgd_linf`, random start) with α = 2.5·ε/steps (MadryLab's convention)."""
    if eps <= 0 or steps <= 0:
        return x.detach()
    prepare_for_backward(model)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        return pgd_linf(model, x, y, eps, 2.5 * eps / steps, steps, gen)
