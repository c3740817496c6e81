"""Labs: one module per analysis, registered with `@register_lab`.

Importing the package imports each of its modules, so a new lab is one file in this folder.
"""

from backend.labs.base import (
    Lab,
    LabContext,
    LabParams,
    LabResult,
    LoadedModel,
    UnknownLab,
    get_lab,
    list_labs,
    register_lab,
)
from backend.registry import import_submodules

import_submodules(__name__)

__all__ = [
    "Lab",
    "LabContext",
    "LabParams",
    "LabResult",
    "LoadedModel",
    "UnknownLab",
    "get_lab",
    "list_labs",
    "register_lab",
]
