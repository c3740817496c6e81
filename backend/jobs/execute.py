"""The one job function every worker runs: load models (cached), run a lab, draw its figures.

It is also what `biaslab run` calls directly, so the CLI, the API and the UI get the same result.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from typing import Any

import torch
from PIL import Image

from backend.config import get_settings
from backend.labs.base import LabContext, LoadedModel, ProgressFn, get_lab, to_jsonable
from backend.models.ood import check_job_image
from backend.models.registry import create_model, get_entry


class JobCancelled(Exception):
    """Raised at the next progress step after a cancel request."""


class JobTimedOut(Exception):
    """Raised at the next progress step once the job is over its time limit."""


@lru_cache(maxsize=32)
def _cached_model(name: str, device: str) -> tuple[LoadedModel, threading.Lock]:
    # Workers keep models loaded between jobs; the lock serialises labs that temporarily hook a model.
    module = create_model(name, device=device)
    return LoadedModel(name=name, entry=get_entry(name), module=module), threading.Lock()


def load_model(name: str, device: str) -> LoadedModel:
    return _cached_model(name, device)[0]


@contextmanager
def _locked_models(names: list[str], device: str) -> Iterator[list[LoadedModel]]:
    loaded = {n: _cached_model(n, device) for n in names}
    with ExitStack() as stack:
        for n in sorted(set(names)):  # fixed order: no deadlock between concurrent jobs
            stack.enter_context(loaded[n][1])
        yield [loaded[n][0] for n in names]


def _no_progress(fraction: float, message: str = "") -> None:
    return None


def _scaled(report: ProgressFn, fraction: float, message: str = "") -> None:
    # Labs see progress in their own 0..1; keep the ends for loading and plotting.
    report(0.05 + 0.85 * min(max(fraction, 0.0), 1.0), message)


def run_lab(
    lab_name: str,
    model_names: list[str],
    image: Image.Image | None,
    params: dict[str, Any] | None,
    *,
    device: str | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Validate, run and plot one lab. Returns {"figures": [...], "metrics": {...}, "text": str|None}."""
    lab = get_lab(lab_name)
    p = lab.Params.model_validate(params or {})
    device = device or get_settings().device
    report: ProgressFn = progress or _no_progress
    report(0.0, "loading models")
    # No global no_grad: attribution labs need gradients; labs pick their own grad mode.
    with _locked_models(model_names, device) as models:
        ctx = LabContext(
            models=models,
            image=image,
            device=torch.device(device),
            progress=functools.partial(_scaled, report),
            load_model=lambda n: load_model(n, device),
        )
        result = lab.run(ctx, p)
    report(0.92, "drawing figures")
    figures = lab.figures(result, p)
    metrics, text = to_jsonable(result.metrics), result.text
    # --- issue 9: is the image like the models' training data? (backend/models/ood.py) ---
    if image is not None and model_names:
        entries = [get_entry(n) for n in model_names]
        ood = check_job_image(image, entries, lambda n: _locked_models(n, device), torch.device(device))
        if ood is not None:
            metrics["ood"] = ood
            text = text if ood["in_distribution"] else f"{ood['sentence']} {text or ''}".strip()
    # --- end issue 9 ---
    report(1.0, "done")
    return {"figures": figures, "metrics": metrics, "text": text}


def rq_job(
    lab_name: str, model_names: list[str], image_id: str | None, params: dict[str, Any] | None
) -> dict:
    """Entry point enqueued on rq. Progress and a clear error message go to job.meta."""
    from rq import get_current_job
    from rq.timeouts import JobTimeoutException

    from backend.jobs.images import load_image
    from backend.jobs.keys import cancel_key

    job = get_current_job()
    assert job is not None
    conn = job.connection
    timeout = job.timeout if job.timeout and job.timeout > 0 else None
    started = time.monotonic()

    def progress(fraction: float, message: str = "") -> None:
        if conn.exists(cancel_key(job.id)):
            raise JobCancelled("cancelled on request")
        if timeout is not None and time.monotonic() - started > timeout:
            raise JobTimedOut(f"job exceeded its time limit of {timeout} s")
        job.meta.update(progress=round(float(fraction), 4), message=message)
        job.save_meta()

    try:
        image = load_image(conn, image_id) if image_id else None
        return run_lab(lab_name, model_names, image, params, progress=progress)
    except JobCancelled:
        job.meta.update(cancelled=True, error="cancelled on request")
        job.save_meta()
        raise
    except (JobTimedOut, JobTimeoutException):
        job.meta.update(error=f"job exceeded its time limit of {timeout} s; try smaller parameters")
        job.save_meta()
        raise
    except Exception as exc:
        job.meta.update(error=f"{type(exc).__name__}: {exc}")
        job.save_meta()
        raise
