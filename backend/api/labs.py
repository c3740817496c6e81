from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import SettingsDep
from backend.labs import list_labs
from backend.schemas import LabInfo

router = APIRouter(prefix="/api/labs", tags=["labs"])


@router.get("", response_model=list[LabInfo])
def labs(settings: SettingsDep) -> list[LabInfo]:
    lessons = settings.assets_dir / "lessons"
    return [
        lab.info(lesson=path.read_text() if (path := lessons / f"{lab.name}.md").exists() else None)
        for lab in list_labs()
    ]
