"""create_app(settings) -> FastAPI: the API under /api, docs at /docs, the Gradio UI mounted at /.

The lifespan connects to the queue (embedded in-memory Redis by default, a real server with
BIASLAB_REDIS_URL) and starts the in-process workers and the dead-worker sweeper.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from starlette.types import Scope

from backend import __version__
from backend.api import health, images, jobs, labs, models
from backend.api.errors import install_error_handlers
from backend.api.middleware import MULTIPART_OVERHEAD, BodyLimit, SecurityHeaders
from backend.api.ratelimit import TokenBuckets
from backend.config import Settings, get_settings
from backend.jobs.connection import connect
from backend.jobs.events import JobEndings
from backend.jobs.service import JobService
from backend.jobs.worker import EmbeddedWorkers, Sweeper
from backend.labs import list_labs
from backend.models import register_timm_specs
from backend.models.imagenet import register_model_set

log = logging.getLogger("biaslab")


def create_app(settings: Settings | None = None, *, mount_ui: bool = True) -> FastAPI:
    settings = settings or get_settings()
    settings.load_plugins()  # labs, models or datasets of the deployment's own
    register_timm_specs(settings.timm_models)
    register_model_set(settings.model_set)  # opt-in ImageNet models (listed even without their weights)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Embedded mode always needs a worker; with Redis, in-process workers are optional.
        count = settings.workers if settings.workers is not None else (0 if settings.redis_url else 1)
        if not settings.redis_url:
            count = max(count, 1)
        # Import the labs (torch, captum: seconds) now, not inside the first request.
        await anyio.to_thread.run_sync(list_labs)
        workers = EmbeddedWorkers(settings, count).start() if count else None
        sweeper = Sweeper(connect(settings.redis_url, role="api", settings=settings), settings).start()
        app.state.endings.start()
        try:
            yield
        finally:
            app.state.endings.stop()
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
    # Short timeouts: while Redis is down the API answers 503 within about a second.
    app.state.redis = connect(settings.redis_url, role="api", settings=settings)
    app.state.jobs = JobService(app.state.redis, settings)
    # Wakes `GET /api/jobs/{id}?wait=` when the job ends; started with the workers, in the lifespan.
    app.state.endings = JobEndings(lambda: connect(settings.redis_url, role="api", settings=settings))
    app.state.rate_limit = (
        TokenBuckets(settings.rate_limit_per_minute / 60.0, settings.rate_limit_burst)
        if settings.rate_limit_per_minute > 0
        else None
    )
    for module in (health, models, labs, images, jobs):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit_for=_body_limit(settings))
    app.add_middleware(SecurityHeaders, frame_ancestors=settings.frame_ancestors)  # outermost

    if mount_ui:
        _mount_ui(app, settings)
    return app


def _mount_ui(app: FastAPI, settings: Settings) -> None:
    import gradio as gr

    from app.main import build_ui, mount_kwargs

    api_base = settings.api_url or f"http://{_loopback(settings.host)}:{settings.port}"
    gr.mount_gradio_app(
        app,
        build_ui(api_base, asgi_app=app),
        path="/",
        max_file_size=settings.max_upload_bytes,  # Gradio's own upload route: the same cap as /api/images
        **mount_kwargs(),
    )


def _body_limit(settings: Settings):  # type: ignore[no-untyped-def]
    """Largest body per route: an image upload for /api/images and the UI, a small JSON elsewhere."""
    upload = settings.max_upload_bytes + MULTIPART_OVERHEAD

    def limit_for(scope: Scope) -> int:
        path: str = scope.get("path", "")
        if path.startswith("/api/") and path.rstrip("/") != "/api/images":
            return settings.max_json_bytes
        return upload

    return limit_for


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
