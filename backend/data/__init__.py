"""Datasets the project makes or finds in installed packages, all behind `load_dataset`.

Importing the package imports each of its modules, so every dataset module registers itself.
"""

from backend.data.registry import DatasetInfo, UnknownDataset, get_dataset, list_datasets, load_dataset
from backend.registry import import_submodules

import_submodules(__name__)

__all__ = ["DatasetInfo", "UnknownDataset", "get_dataset", "list_datasets", "load_dataset"]
