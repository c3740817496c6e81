"""Models trained on `relational` (same/different colour, backend/data/relational.py), for the gating lab.

Three models from the zoo's own ConViT code (backend/models/zoo.py `build_convit`), 2 classes:

- `convit-relational`: ConViT (d'Ascoli et al., ICML 2021, arXiv 2103.10697), 4 GPSA layers + 2 MHSA,
  with its locality initialisation (`GPSA.local_init`, METHODS §1).
- `deit-relational`: the same code with `local_up_to_layer=0` (DeiT-like ViT, no GPSA).
- `convit-nolocal-relational`: ConViT *without* its local initialisation, the ablation of d'Ascoli et al.
  (Sec. 4.2): `pos_proj` and `v` are left at timm's ordinary init (trunc-normal, std 0.02), so each
  positional attention starts nearly uniform. The gates still start at σ(1) = 0.73. What this model's gates
  do separates what the architecture learns from what its initialisation gave it.

`biaslab zoo train NAME` trains each from `RELATIONAL_RECIPE` (the same loop as the shapes zoo).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import trunc_normal_
from timm.models.convit import GPSA
from torch import nn

from backend.data.relational import RELATIONAL_CLASSES
from backend.data.shapes import MEAN, STD
from backend.models.registry import (
    GradcamTarget,
    ModelEntry,
    UnknownModel,
    get_entry,
    load_state_dict,
    register_model,
)
from backend.models.zoo import BASE_RECIPE, INPUT_SIZE, build_convit, build_deit

NUM_CLASSES = len(RELATIONAL_CLASSES)


def undo_local_init(model: nn.Module) -> nn.Module:
    """Re-draw every GPSA's `pos_proj` and `v` weights as timm's `_init_weights` draws other linears."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GPSA):
                trunc_normal_(m.pos_proj.weight, std=0.02)
                trunc_normal_(m.v.weight, std=0.02)
    return model


def build_convit_relational() -> nn.Module:
    return build_convit(num_classes=NUM_CLASSES)


def build_deit_relational() -> nn.Module:
    return build_deit(num_classes=NUM_CLASSES)


def build_convit_nolocal_relational() -> nn.Module:
    return undo_local_init(build_convit(num_classes=NUM_CLASSES))


_CONVIT_CITE = (
    "d'Ascoli et al., ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases, "
    "ICML 2021 (arXiv 2103.10697)"
)
_MODELS: dict[str, tuple[str, Any, str, GradcamTarget]] = {
    "convit-relational": (
        "convit",
        build_convit_relational,
        "ConViT (4 GPSA + 2 MHSA layers, local init) trained on relational same/different colour.",
        GradcamTarget("blocks.3", token_grid=True),
    ),
    "deit-relational": (
        "vit",
        build_deit_relational,
        "DeiT-like ViT (the ConViT code with local_up_to_layer=0) trained on relational same/different "
        "colour.",
        GradcamTarget("blocks.5.norm1", token_grid=True, num_prefix_tokens=1),
    ),
    "convit-nolocal-relational": (
        "convit",
        build_convit_nolocal_relational,
        "ConViT without its locality initialisation (ablation) trained on relational same/different colour.",
        GradcamTarget("blocks.3", token_grid=True),
    ),
}
RELATIONAL_MODELS: tuple[str, ...] = tuple(_MODELS)
# Which ConViTs keep their locality initialisation (the DeiT-like ViT has no GPSA to initialise).
LOCAL_INIT: dict[str, bool] = {"convit-relational": True, "convit-nolocal-relational": False}

# Sized for this project's CPU budget: 20-26 minutes per model on one thread (two sharing 2 cores); all
# three reach 100 % test accuracy on the colour task in it.
RELATIONAL_RECIPE: dict[str, Any] = {
    **BASE_RECIPE,
    "dataset": "relational",
    "batch_size": 64,
    "steps": 1500,
    "lr": 1e-3,
}


def _entry(name: str) -> ModelEntry:
    family, builder, description, gradcam = _MODELS[name]
    return ModelEntry(
        name=name,
        family=family,
        task="classification",
        dataset="relational",
        builder=builder,
        input_size=INPUT_SIZE,
        mean=MEAN,
        std=STD,
        class_names=RELATIONAL_CLASSES,
        description=description,
        citation=_CONVIT_CITE if family == "convit" else "Touvron et al., DeiT, ICML 2021 (arXiv 2012.12877)",
        regime="standard" if name != "convit-nolocal-relational" else "no local init",
        weights=name,
        gradcam=gradcam,
        recipe=RELATIONAL_RECIPE,
    )


for _name in _MODELS:
    register_model(_entry(_name))


def relational_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise UnknownModel(f"unknown relational model {name!r}; known: {', '.join(RELATIONAL_MODELS)}")
    return get_entry(name)


def load_relational_model(name: str, device: str | torch.device = "cpu") -> tuple[ModelEntry, nn.Module]:
    """Entry and trained model in eval mode (weights from backend/models/weights/<name>.safetensors)."""
    entry = relational_entry(name)
    model = entry.builder()
    path = entry.weights_path
    assert path is not None
    model.load_state_dict(load_state_dict(path))
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **entry.pretrained_cfg()}  # type: ignore[assignment]
    return entry, model.eval().to(device)
