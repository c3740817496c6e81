from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from fastapi import APIRouter

from backend.models import ModelEntry, get_entry, list_models
from backend.schemas import ModelInfo

router = APIRouter(prefix="/api/models", tags=["models"])


@lru_cache(maxsize=64)
def architecture(name: str) -> dict[str, Any] | None:
    """Layer and head counts of a transformer-style model (so the UI can bound layer/head fields).

    Built on the meta device: no memory and no weights, just the module tree.
    """
    with torch.device("meta"):
        m = get_entry(name).builder()
    blocks = getattr(m, "blocks", None)
    if blocks is None or not len(blocks):
        return None
    grid = getattr(getattr(m, "patch_embed", None), "grid_size", None)
    return {
        "layers": len(blocks),
        "heads": getattr(getattr(blocks[0], "attn", None), "num_heads", None),
        "gpsa_layers": sum(bool(getattr(b, "use_gpsa", False)) for b in blocks),
        "patch_grid": list(grid) if grid else None,
    }


def model_info(entry: ModelEntry) -> ModelInfo:
    card = entry.card()
    return ModelInfo(
        name=entry.name,
        family=entry.family,
        task=entry.task,
        dataset=entry.dataset,
        params=card.get("params") if card else None,
        input_size=list(entry.input_size),
        description=entry.description,
        citation=entry.citation,
        class_names=list(entry.class_names),
        card=card,
        regime=entry.regime,
        architecture=architecture(entry.name) if entry.source in ("zoo", "computed") else None,
        source=entry.source,
    )


@router.get("", response_model=list[ModelInfo])
def models() -> list[ModelInfo]:
    return [model_info(e) for e in list_models()]
