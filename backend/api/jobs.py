from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from backend.api.deps import JobsDep, RateLimited, RedisDep, SettingsDep
from backend.api.errors import error_responses
from backend.api.guards import JOB_ID_PATTERN, number_errors
from backend.jobs.images import image_exists
from backend.jobs.service import JobEnded, QueueFull, UnknownJob
from backend.labs.base import UnknownLab, get_lab
from backend.models.registry import UnknownModel, get_entry
from backend.schemas import JobCreate, JobCreated, JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=error_responses(422, 503))

JobId = Annotated[
    str, Path(pattern=JOB_ID_PATTERN, description="Job id from POST /api/jobs (letters, digits, - and _)")
]


def _validate(body: JobCreate, conn: Any) -> dict[str, Any]:
    """Everything a worker would reject, rejected here first with a message a person can act on."""
    try:
        lab = get_lab(body.lab)
    except UnknownLab as exc:
        raise HTTPException(404, exc.args[0]) from None
    if len(body.models) > lab.max_models:
        raise HTTPException(422, f"lab {lab.name!r} takes at most {lab.max_models} models")
    if lab.max_models > 0 and not body.models:
        raise HTTPException(422, f"choose at least one model for lab {lab.name!r}")
    for name in body.models:
        try:
            entry = get_entry(name)
        except UnknownModel as exc:
            raise HTTPException(404, exc.args[0]) from None
        if not lab.accepts(entry):
            allowed = ", ".join(lab.model_families or lab.model_tasks)
            raise HTTPException(
                422, f"lab {lab.name!r} cannot analyse {name!r} ({entry.family}); it takes {allowed}"
            )
    if lab.needs_image and not body.image_id:
        raise HTTPException(422, f"lab {lab.name!r} needs an image: upload one or pick an example")
    if body.image_id and not image_exists(conn, body.image_id):
        raise HTTPException(404, f"unknown or expired image {body.image_id!r}; upload it again")
    # NaN/Infinity and integers past int64 pass pydantic's plain `float`/`int` and failed later.
    bad_numbers = number_errors(body.params, ("body", "params"))
    if bad_numbers:
        raise RequestValidationError(bad_numbers)
    try:
        params = lab.Params.model_validate(body.params)
    except ValidationError as exc:
        # Same shape as FastAPI's own 422s, with the location inside "params".
        errors = [
            {
                "type": e["type"],
                "loc": ["body", "params", *e["loc"]],
                "msg": e["msg"],
                "input": e.get("input"),
            }
            for e in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None
    return params.model_dump(mode="json")


@router.post(
    "",
    status_code=202,
    response_model=JobCreated,
    dependencies=[RateLimited],
    responses=error_responses(400, 404, 413, 429),
)
def submit(body: JobCreate, jobs: JobsDep, conn: RedisDep, settings: SettingsDep) -> JobCreated:
    params = _validate(body, conn)
    try:
        job = jobs.submit(body.lab, body.models, body.image_id, params, body.timeout_s)
    except QueueFull as exc:
        raise HTTPException(
            429,
            f"the queue is full ({exc}); try again in a little while",
            headers={"Retry-After": str(settings.queue_full_retry_after_s)},
        ) from None
    return JobCreated(id=job.id)


@router.get("/{job_id}", response_model=JobView, responses=error_responses(404))
def status(job_id: JobId, jobs: JobsDep) -> dict[str, Any]:
    try:
        return jobs.view(job_id)
    except UnknownJob as exc:
        raise HTTPException(404, exc.args[0]) from None


@router.delete("/{job_id}", status_code=202, responses=error_responses(404, 409))
def cancel(job_id: JobId, jobs: JobsDep) -> dict[str, str]:
    try:
        jobs.cancel(job_id)
    except UnknownJob as exc:
        raise HTTPException(404, exc.args[0]) from None
    except JobEnded as exc:
        raise HTTPException(409, exc.args[0]) from None
    return {"id": job_id, "status": "cancelling"}
