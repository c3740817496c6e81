from __future__ import annotations

from fastapi import APIRouter

from backend.models import ModelEntry, list_models
from backend.models.registry import model_architecture, unavailable_reason
from backend.schemas import ModelInfo

router = APIRouter(prefix="/api/models", tags=["models"])


def model_info(entry: ModelEntry) -> ModelInfo:
    card = entry.card()
    reason = unavailable_reason(entry)
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
        architecture=model_architecture(entry.name)
        if entry.source in ("zoo", "computed") or (entry.timm_name and reason is None)
        else None,
        source=entry.source,
        model_set=entry.model_set,
        available=reason is None,
        unavailable_reason=reason,
    )


@router.get("", response_model=list[ModelInfo])
def models() -> list[ModelInfo]:
    return [model_info(e) for e in list_models()]
