"""create_app(settings) -> FastAPI: the API under /api, docs at /docs, the Gradio UI mounted at /.

The lifespan connects to the queue (embedded in-memory Redis by default, a real server with
BIASLAB_REDIS_URL) and starts the in-process workers and the dead-worker sweeper.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backend import __version__
from backend.api import health, images, jobs, labs, models
from backend.config import Settings, get_settings
from backend.jobs.connection import connect
from backend.jobs.service import JobService
from backend.jobs.worker import EmbeddedWorkers, Sweeper
from backend.models import register_timm_specs

log = logging.getLogger("biaslab")


def create_app(settings: Settings | None = None, *, mount_ui: bool = True) -> FastAPI:
    settings = settings or get_settings()
    settings.load_plugins()  # labs, models or datasets of the deployment's own
    register_timm_specs(settings.timm_models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Embedded mode always needs a worker; with Redis, in-process workers are optional.
        count = settings.workers if settings.workers is not None else (0 if settings.redis_url else 1)
        if not settings.redis_url:
            count = max(count, 1)
        workers = EmbeddedWorkers(settings, count).start() if count else None
        sweeper = Sweeper(connect(settings.redis_url), settings).start()
        try:
            yield
        finally:
            sweeper.stop()
            if workers:
                workers.stop()

    app = FastAPI(
        title="Inductive Bias Lab",
        version=__version__,
        description="See the inductive biases of neural networks: attention locality, gating, attribution.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.redis = connect(settings.redis_url)
    app.state.jobs = JobService(app.state.redis, settings)
    for module in (health, models, labs, images, jobs):
        app.include_router(module.router)

    @app.exception_handler(redis.RedisError)
    async def queue_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        return JSONResponse({"detail": f"the job queue is unavailable right now ({exc}); retry shortly"}, 503)

    if mount_ui:
        _mount_ui(app, settings)
    return app


def _mount_ui(app: FastAPI, settings: Settings) -> None:
    import gradio as gr

    from app.main import build_ui, mount_kwargs

    api_base = settings.api_url or f"http://{_loopback(settings.host)}:{settings.port}"
    gr.mount_gradio_app(app, build_ui(api_base, asgi_app=app), path="/", **mount_kwargs())


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
