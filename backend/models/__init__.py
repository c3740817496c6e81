"""Model registry: the project's trained zoo plus any timm model with local or Hub weights.

Importing the package imports each of its modules, so every model module registers its models.
"""

from backend.models.registry import (
    GradcamTarget,
    ModelEntry,
    ModelNotAvailable,
    UnknownModel,
    create_model,
    get_entry,
    list_models,
    register_model,
    register_timm_model,
    register_timm_specs,
)
from backend.registry import import_submodules

import_submodules(__name__)

__all__ = [
    "GradcamTarget",
    "ModelEntry",
    "ModelNotAvailable",
    "UnknownModel",
    "create_model",
    "get_entry",
    "list_models",
    "register_model",
    "register_timm_model",
    "register_timm_specs",
]
