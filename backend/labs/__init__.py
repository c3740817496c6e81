"""Labs: one module per analysis, registered with `@register_lab`."""

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
