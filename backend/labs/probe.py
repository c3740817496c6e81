"""Probe sets: a fixed, seeded sample of a model's test split, preprocessed the model's own way."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torch import nn

from backend.data import list_datasets, load_dataset
from backend.models.preprocess import data_config
from backend.models.registry import ModelEntry


def probe_dataset(entry: ModelEntry) -> str:
    """The dataset probe images come from: the model's own (the zoo), or its `probe_set` (ImageNet
    models, whose training data is not here: the photos of `backend.data.imagenet_photos`)."""
    return entry.probe_set or entry.dataset


def has_probe_set(entry: ModelEntry, split: str = "test") -> bool:
    """Whether the project can draw labelled images of that split for the model."""
    names = {d.name: d for d in list_datasets()}
    info = names.get(probe_dataset(entry))
    return info is not None and split in info.splits and bool(info.class_names)


def probe_images(
    entry: ModelEntry, n: int, seed: int = 0, split: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """n images (N, H, W, 3) uint8 and labels (N,) of one split of the model's probe dataset.

    The project's datasets deal their labels out evenly (a shuffled arange % classes), so any n images
    hold ⌊n / classes⌋ or one more of each class."""
    if has_probe_set(entry, split):
        s = load_dataset(probe_dataset(entry), split, n=n, seed=seed)
        return s.images, s.labels
    known = ", ".join(d.name for d in list_datasets() if d.class_names)
    raise ValueError(
        f"{entry.name!r} was trained on {entry.dataset!r}, which has no {split} probe set here (only "
        f"{known}); use probe_size=0 where the lab allows it"
    )


def preprocess_batch(images: np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, C, H, W) through the model's own eval transform (as for one image)."""
    transform = create_transform(**data_config(model), is_training=False)
    out = [transform(Image.fromarray(img).convert("RGB")) for img in images]
    return torch.stack(out)  # type: ignore[arg-type]


def batches(x: torch.Tensor, size: int) -> Iterator[tuple[int, torch.Tensor]]:
    for start in range(0, x.shape[0], size):
        yield start, x[start : start + size]
