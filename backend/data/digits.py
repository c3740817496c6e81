"""`digits`: scikit-learn's 1797 handwritten 8×8 digits (UCI optdigits; Alpaydin & Kaynak 1998),
upsampled to RGB. Shipped inside the sklearn wheel, so nothing is downloaded.

Splits are a stratified, seeded 70/15/15 partition. Pixel values 0..16 are mapped to 0..255.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.splits import SPLITS, Split

DIGIT_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)  # (1797, 8, 8), (1797,)


def _partition(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a, b = int(0.7 * len(idx)), int(0.85 * len(idx))
        parts["train"].append(idx[:a])
        parts["val"].append(idx[a:b])
        parts["test"].append(idx[b:])
    return {s: np.sort(np.concatenate(v)) for s, v in parts.items()}


def load_digits_split(split: str, seed: int = 0, size: int = 32, mode: str = "bilinear") -> Split:
    """One split, images (N, size, size, 3) uint8 (white digit on black), labels (N,)."""
    images, labels = _raw()
    idx = _partition(labels, seed)[split]
    x = torch.from_numpy(images[idx])[:, None]  # (N, 1, 8, 8)
    kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    up = F.interpolate(x, size=(size, size), mode=mode, **kw).clamp(0, 1)  # (N, 1, size, size)
    rgb = np.repeat(np.rint(up.numpy()[:, 0, :, :, None] * 255).astype(np.uint8), 3, axis=3)
    return Split(rgb, labels[idx], DIGIT_CLASSES, {"index": idx})


def _load(split: str, n: int | None, seed: int) -> Split:
    full = load_digits_split(split, seed=seed)
    if n is None or n >= len(full):
        return full
    return full.subset(np.sort(np.random.default_rng([seed, 17]).permutation(len(full))[:n]))


register_dataset(
    DatasetInfo(
        "digits",
        "scikit-learn's handwritten digits (8×8), upsampled to 32×32 RGB; stratified 70/15/15 splits",
        DIGIT_CLASSES,
        _load,
        source="sklearn.datasets.load_digits",
    )
)
