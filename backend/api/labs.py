from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import SettingsDep
from backend.labs.base import Lab, list_labs
from backend.schemas import LabInfo

router = APIRouter(prefix="/api/labs", tags=["labs"])


def lab_info(lab: Lab, lessons_dir) -> LabInfo:  # type: ignore[no-untyped-def]
    lesson_file = lessons_dir / f"{lab.name}.md"
    return LabInfo(
        name=lab.name,
        title=lab.title,
        description=lab.description,
        params_schema=lab.Params.model_json_schema(),
        model_tasks=list(lab.model_tasks),
        model_families=list(lab.model_families) if lab.model_families is not None else None,
        needs_image=lab.needs_image,
        max_models=lab.max_models,
        default_models=list(lab.default_models),
        lesson=lesson_file.read_text() if lesson_file.exists() else None,
    )


@router.get("", response_model=list[LabInfo])
def labs(settings: SettingsDep) -> list[LabInfo]:
    return [lab_info(lab, settings.assets_dir / "lessons") for lab in list_labs()]
