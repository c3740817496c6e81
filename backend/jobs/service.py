"""The API's view of the queue: submit, look up, cancel. Same code for embedded and Redis modes."""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from backend.config import Settings
from backend.jobs.events import announce_end
from backend.jobs.execute import rq_job
from backend.jobs.keys import cancel_key
from backend.schemas import JobStatus as ApiStatus


class UnknownJob(KeyError):
    pass


class JobEnded(Exception):
    """Cancel asked for a job that already finished, failed or was cancelled."""


class QueueFull(Exception):
    """More jobs are waiting than `max_queued_jobs`; the caller should retry later."""


# rq's states collapsed onto the API contract's five (backend.schemas.JobStatus).
_STATUS: dict[JobStatus, ApiStatus] = {
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "cancelled",
    JobStatus.CANCELED: "cancelled",
}


def _message(status: ApiStatus, reported: str | None) -> str | None:
    # A worker stops reporting at its end (rq records that), so a finished job's last report is stale;
    # a job that started but has not reported yet still carries its submission's "queued".
    if status == "finished":
        return "done"
    if status == "started" and reported == "queued":
        return "starting"
    return reported


class JobService:
    def __init__(self, conn: redis.Redis, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.queue = Queue(settings.queue_name, connection=conn)

    def submit(
        self,
        lab: str,
        models: list[str],
        image_id: str | None,
        params: dict[str, Any],
        timeout_s: int | None = None,
        text: str | None = None,
    ) -> Job:
        # Checked before enqueueing, so concurrent submissions may overshoot by the number of API
        # threads; nothing already queued is ever dropped.
        if self.queue.count >= self.settings.max_queued_jobs:
            raise QueueFull(f"{self.settings.max_queued_jobs} jobs are already waiting")
        limit = self.settings.job_timeout_s
        return self.queue.enqueue(
            rq_job,
            lab,
            models,
            image_id,
            params,
            text,
            job_timeout=min(timeout_s, limit) if timeout_s else limit,
            result_ttl=self.settings.result_ttl_s,
            failure_ttl=self.settings.failure_ttl_s,
            description=f"{lab} on {', '.join(models) or 'no model'}",
            meta={"lab": lab, "progress": 0.0, "message": "queued"},
        )

    def fetch(self, job_id: str) -> Job:
        try:
            return Job.fetch(job_id, connection=self.conn)
        except NoSuchJobError:
            raise UnknownJob(f"unknown or expired job {job_id!r}") from None

    def view(self, job_id: str) -> dict[str, Any]:
        job = self.fetch(job_id)  # one HGETALL: status and meta come with it, no need to ask again
        rq_status = job.get_status(refresh=False)
        meta = job.get_meta(refresh=False)
        status: ApiStatus = _STATUS.get(rq_status, "queued") if rq_status is not None else "queued"
        if status == "failed" and meta.get("cancelled"):
            status = "cancelled"
        result = job.return_value() if status == "finished" else None
        error = None
        if status in ("failed", "cancelled"):
            error = meta.get("error") or self._last_error_line(job) or status
        progress = 1.0 if status == "finished" else float(meta.get("progress", 0.0))
        return {
            "id": job.id,
            "lab": meta.get("lab") or (job.args[0] if job.args else ""),
            "status": status,
            "progress": progress,
            "message": _message(status, meta.get("message")),
            "result": result,
            # The latest partial result, while the lab runs (a finished job's result supersedes it).
            "partial": meta.get("partial") if status != "finished" else None,
            "error": error,
        }

    @staticmethod
    def _last_error_line(job: Job) -> str | None:
        latest = job.latest_result()
        text = getattr(latest, "exc_string", None) if latest is not None else None
        if not text:
            return None
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else None

    def cancel(self, job_id: str) -> None:
        """Queued jobs are cancelled at once; running ones stop at their next progress step."""
        job = self.fetch(job_id)
        status = job.get_status(refresh=True)
        if status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
            ended = "cancelled" if job.get_meta(refresh=False).get("cancelled") else _STATUS[status]
            raise JobEnded(f"job {job_id!r} already {ended}; there is nothing to cancel")
        self.conn.set(cancel_key(job_id), 1, ex=max(self.settings.job_timeout_s * 2, 3600))
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            # If a worker took it meanwhile, that worker sees the cancel key at its first progress step.
            with contextlib.suppress(InvalidJobOperation):
                job.cancel()
                announce_end(self.conn, job_id)
