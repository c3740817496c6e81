from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from backend.api.deps import JobsDep, RedisDep
from backend.jobs.images import image_exists
from backend.jobs.service import UnknownJob
from backend.labs.base import UnknownLab, get_lab
from backend.models.registry import UnknownModel, get_entry
from backend.schemas import JobCreate, JobCreated, JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


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


@router.post("", status_code=202, response_model=JobCreated)
def submit(body: JobCreate, jobs: JobsDep, conn: RedisDep) -> JobCreated:
    params = _validate(body, conn)
    job = jobs.submit(body.lab, body.models, body.image_id, params, body.timeout_s)
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
