from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import redis
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from backend.api.deps import EndingsDep, JobsDep, RateLimited, RedisDep, SettingsDep
from backend.api.errors import error_responses
from backend.api.guards import JOB_ID_PATTERN
from backend.config import Settings
from backend.jobs.images import image_exists
from backend.jobs.service import JobEnded, JobService, QueueFull, UnknownJob
from backend.jobs.validate import JobRequestError, validate_job
from backend.schemas import ErrorResponse, JobCreate, JobCreated, JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=error_responses(422, 503))

T = TypeVar("T")

JobId = Annotated[
    str, Path(pattern=JOB_ID_PATTERN, description="Job id from POST /api/jobs (letters, digits, - and _)")
]


def _validate(body: JobCreate, conn: Any) -> dict[str, Any]:
    """Everything a worker would reject, rejected here first (the same checks `run_lab` makes)."""
    try:
        job = validate_job(
            body.lab,
            body.models,
            body.params,
            image_id=body.image_id,
            text=body.text,
            image_exists=lambda image_id: image_exists(conn, image_id),
        )
    except JobRequestError as exc:
        if isinstance(exc.detail, list):  # field errors: the same shape as FastAPI's own 422s
            raise RequestValidationError(exc.detail) from None
        raise HTTPException(exc.status, exc.detail) from None
    return job.params.model_dump(mode="json")


@router.post(
    "",
    status_code=202,
    response_model=JobCreated,
    dependencies=[RateLimited],
    responses={
        **error_responses(400, 404, 413, 429),
        409: {"model": ErrorResponse, "description": "A chosen model is not available on this server"},
    },
)
async def submit(body: JobCreate, jobs: JobsDep, conn: RedisDep, settings: SettingsDep) -> JobCreated:
    return await _with_store(settings, _submit, body, jobs, conn, settings)


async def _with_store(settings: Settings, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn`, which talks to Redis, off the event loop; but in the loop with the embedded in-memory
    store, whose commands never wait on a socket: the thread pool's two hand-offs per call cost more
    than the call (about 1 ms per job with the worker thread busy)."""
    if settings.redis_url is None:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


def _submit(body: JobCreate, jobs: JobService, conn: redis.Redis, settings: Settings) -> JobCreated:
    params = _validate(body, conn)
    try:
        job = jobs.submit(body.lab, body.models, body.image_id, params, body.timeout_s, text=body.text)
    except QueueFull as exc:
        raise HTTPException(
            429,
            f"the queue is full ({exc}); try again in a little while",
            headers={"Retry-After": str(settings.queue_full_retry_after_s)},
        ) from None
    return JobCreated(id=job.id)


# Long enough that a waiting client asks rarely, short enough for proxies that drop idle requests.
MAX_WAIT_S = 30.0
ENDED = ("finished", "failed", "cancelled")


def _view(jobs: JobService, job_id: str) -> dict[str, Any]:
    try:
        return jobs.view(job_id)
    except UnknownJob as exc:
        raise HTTPException(404, exc.args[0]) from None


@router.get("/{job_id}", response_model=JobView, responses=error_responses(404))
async def status(
    job_id: JobId,
    jobs: JobsDep,
    endings: EndingsDep,
    settings: SettingsDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            description="Seconds to wait for the job to end before answering; the answer comes the moment "
            "it ends. 0 (the default) answers at once.",
        ),
    ] = 0.0,
    until: Annotated[
        Literal["end", "change"],
        Query(
            description="With `wait`: `end` answers when the job ends; `change` also when a queued job "
            "starts (a page shows progress from then on)."
        ),
    ] = "end",
) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    asked_while: str | None = None  # the status when asked: `until=change` answers when it differs
    # Registered before the first read, and cleared before each: a change after a read is never missed.
    with endings.waiting(job_id, starts=until == "change") as changed:
        while True:
            changed.clear()
            view = await _with_store(settings, _view, jobs, job_id)
            asked_while = asked_while or view["status"]
            if view["status"] in ENDED or (until == "change" and view["status"] != asked_while):
                return view
            left = deadline - time.monotonic()
            if left <= 0:
                return view
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)


@router.delete("/{job_id}", status_code=202, responses=error_responses(404, 409))
def cancel(job_id: JobId, jobs: JobsDep) -> dict[str, str]:
    try:
        jobs.cancel(job_id)
    except UnknownJob as exc:
        raise HTTPException(404, exc.args[0]) from None
    except JobEnded as exc:
        raise HTTPException(409, exc.args[0]) from None
    return {"id": job_id, "status": "cancelling"}
