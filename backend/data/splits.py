"""Small helpers shared by the procedural datasets: seeded generators, splits, tensor conversion.

Every dataset is numpy-first: images are `uint8` arrays of shape (N, H, W, 3) and labels `int64` (N,).
Each split draws from its own generator, derived from (seed, split index), so the test split of a
seed never changes when the training split's size does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split of a dataset: images (N, H, W, 3) uint8, labels (N,) int64, per-image metadata."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> Split:
        return Split(
            self.images[index],
            self.labels[index],
            self.class_names,
            {k: v[index] for k, v in self.meta.items()},
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float32 in [0, 1] and (N,) int64: what the models take (mean 0, std 1 config)."""
        return to_tensor(self.images), torch.from_numpy(self.labels.astype(np.int64))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div_(255.0)


def split_rng(seed: int, split: str) -> np.random.Generator:
    """Independent generator per (seed, split); the split index keeps the three streams apart."""
    return np.random.default_rng([int(seed), SPLITS.index(split) + 1])


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def class_fraction(labels: np.ndarray, fraction: float, num_classes: int) -> np.ndarray:
    """Indices of the first ⌊n_c·f⌋ samples of each class (at least 1), as ConViT's `sampling_ratio` does."""
    keep: list[np.ndarray] = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        keep.append(idx[: max(1, int(len(idx) * fraction))])
    return np.sort(np.concatenate(keep))


def describe(split: Split) -> dict[str, Any]:
    return {"n": len(split), "classes": len(split.class_names), "shape": list(split.images.shape[1:])}
