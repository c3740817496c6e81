"""Model registry: the project's trained zoo plus any timm model with local or Hub weights."""

from backend.models.registry import (
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

__all__ = [
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
