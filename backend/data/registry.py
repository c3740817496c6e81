"""The dataset registry: `load_dataset(name, split, n, seed)` for every dataset the project makes.

Probe sets, `zoo verify`, training and the labs read through it, so a new dataset is one module that
calls `register_dataset` (the package imports every module in `backend/data/`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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


# Labs read the same small splits on every job (calibration: three splits per model, each rendered
# afresh in about half a second), so recent results are kept. Arrays come back read-only: the cache
# hands the same arrays to every caller, and one that wrote into them would change them for all.
CACHE_SPLITS = 32
CACHE_MAX_BYTES = 8 * 2**20  # at most 256 MB in all; a training split of thousands of images is not kept
_cache: OrderedDict[tuple[str, str, int | None, int], Split] = OrderedDict()
_cache_lock = threading.Lock()


def load_dataset(name: str, split: str = "test", n: int | None = None, seed: int = 0) -> Split:
    """One split of a registered dataset; the same arguments always give the same images."""
    info = get_dataset(name)
    if split not in info.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; it has {', '.join(info.splits)}")
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    key = (name, split, n, seed)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _shallow(_cache[key])
    data = info.loader(split, n, seed)
    size = data.images.nbytes + data.labels.nbytes + sum(v.nbytes for v in data.meta.values())
    if size <= CACHE_MAX_BYTES:
        for array in (data.images, data.labels, *data.meta.values()):
            array.flags.writeable = False
        with _cache_lock:
            _cache[key] = data
            while len(_cache) > CACHE_SPLITS:
                _cache.popitem(last=False)
        return _shallow(data)
    return data


def _shallow(data: Split) -> Split:
    """A new Split over the same (read-only) arrays: callers may rebind its fields freely."""
    return Split(data.images, data.labels, data.class_names, dict(data.meta))
