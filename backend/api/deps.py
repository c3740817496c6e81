"""Shared request dependencies as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request

from backend.config import Settings
from backend.jobs.service import JobService


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _conn(request: Request) -> redis.Redis:
    conn: redis.Redis = request.app.state.redis
    return conn


def _jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[redis.Redis, Depends(_conn)]
JobsDep = Annotated[JobService, Depends(_jobs)]
