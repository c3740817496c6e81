from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError

from backend.api.deps import JobsDep, RedisDep
from backend.jobs.images import image_exists
from backend.jobs.service import UnknownJob
from backend.jobs.validate import JobRequestError, validate_job
from backend.schemas import JobCreate, JobCreated, JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


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


@router.post("", status_code=202, response_model=JobCreated)
def submit(body: JobCreate, jobs: JobsDep, conn: RedisDep) -> JobCreated:
    params = _validate(body, conn)
    job = jobs.submit(body.lab, body.models, body.image_id, params, body.timeout_s, text=body.text)
    return JobCreated(id=job.id)


@router.get("/{job_id}", response_model=JobView)
def status(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    try:
        return jobs.view(job_id)
    except UnknownJob as exc:
        raise HTTPException(404, exc.args[0]) from None


@router.delete("/{job_id}", status_code=202)
def cancel(job_id: str, jobs: JobsDep) -> dict[str, str]:
    try:
        jobs.cancel(job_id)
    except UnknownJob as exc:
        raise HTTPException(404, exc.args[0]) from None
    return {"id": job_id, "status": "cancelling"}
