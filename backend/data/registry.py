"""The dataset registry: `load_dataset(name, split, n, seed)` for every dataset the project makes.

Probe sets, `zoo verify`, training and the labs read through it, so a new dataset is one module that
calls `register_dataset` (the package imports every module in `backend/data/`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backend.data.splits import SPLITS, Split
from backend.registry import NotRegistered, Registry


class UnknownDataset(NotRegistered):
    pass


# (split, n or None for the dataset's default size, seed) -> Split
Loader = Callable[[str, int | None, int], Split]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    class_names: tuple[str, ...]  # empty for unlabelled sets (the photo set)
    loader: Loader
    splits: tuple[str, ...] = SPLITS
    source: str = ""  # where the images come from, for a card or a caption


_DATASETS: Registry[DatasetInfo] = Registry("dataset", UnknownDataset)


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    return _DATASETS.add(info.name, info)


def get_dataset(name: str) -> DatasetInfo:
    return _DATASETS.get(name)


def list_datasets() -> list[DatasetInfo]:
    return list(_DATASETS)


def load_dataset(name: str, split: str = "test", n: int | None = None, seed: int = 0) -> Split:
    """One split of a registered dataset; the same arguments always give the same images."""
    info = get_dataset(name)
    if split not in info.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; it has {', '.join(info.splits)}")
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return info.loader(split, n, seed)
