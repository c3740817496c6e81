from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import RedisDep, SettingsDep
from backend.api.errors import error_responses
from backend.jobs.worker import alive_workers
from backend.schemas import Health, WorkerInfo

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=Health, responses=error_responses(503))
def health(conn: RedisDep, settings: SettingsDep) -> Health:
    # A Redis error becomes the app-wide 503 (no internal address in the answer).
    workers = alive_workers(conn)
    return Health(
        queue="redis" if settings.redis_url else "embedded",
        workers=len(workers),
        worker_info=[WorkerInfo(name=n, device=d) for n, d in sorted(workers.items())],
    )
