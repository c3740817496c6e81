"""Shared request dependencies as `Annotated` aliases.

All are `async def` although none awaits: FastAPI runs a plain `def` dependency in its thread pool, and
those hand-offs were a tenth of the API's busy time per job.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, HTTPException, Request

from backend.api.ratelimit import TokenBuckets, client_key, retry_after
from backend.config import Settings
from backend.jobs.events import JobEndings
from backend.jobs.service import JobService


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _conn(request: Request) -> redis.Redis:
    conn: redis.Redis = request.app.state.redis
    return conn


async def _jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


async def _endings(request: Request) -> JobEndings:
    endings: JobEndings = request.app.state.endings
    return endings


async def _rate_limit(request: Request) -> None:
    """429 with Retry-After once this client has used up its bucket (before the body is read)."""
    buckets: TokenBuckets | None = request.app.state.rate_limit
    if buckets is None:
        return
    settings: Settings = request.app.state.settings
    peer = request.client.host if request.client else None
    key = client_key(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)
    if key is None:
        return
    wait_s = buckets.take(key)
    if wait_s > 0:
        raise HTTPException(
            429,
            f"too many requests from this address; at most {settings.rate_limit_per_minute:g} per minute",
            headers={"Retry-After": retry_after(wait_s)},
        )


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[redis.Redis, Depends(_conn)]
JobsDep = Annotated[JobService, Depends(_jobs)]
EndingsDep = Annotated[JobEndings, Depends(_endings)]
RateLimited = Depends(_rate_limit)
