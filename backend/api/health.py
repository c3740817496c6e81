from __future__ import annotations

import redis
from fastapi import APIRouter, HTTPException

from backend.api.deps import RedisDep, SettingsDep
from backend.jobs.worker import alive_workers
from backend.schemas import Health, WorkerInfo

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=Health)
def health(conn: RedisDep, settings: SettingsDep) -> Health:
    try:
        workers = alive_workers(conn)
    except redis.RedisError as exc:
        raise HTTPException(503, f"queue unavailable: {exc}") from exc
    return Health(
        queue="redis" if settings.redis_url else "embedded",
        workers=len(workers),
        worker_info=[WorkerInfo(name=n, device=d) for n, d in sorted(workers.items())],
    )
