"""The one job function every worker runs: validate, load models (cached), run a lab, draw its figures.

It is also what `biaslab run` calls directly, so the CLI, the API and the UI get the same result.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import torch
from PIL import Image

from backend.config import Settings, get_settings
from backend.jobs.batching import BATCHER
from backend.jobs.validate import JobRequestError, validate_job
from backend.labs import LabContext, LabResult, LoadedModel
from backend.labs.base import to_jsonable
from backend.models import create_model, get_entry
from backend.models.ood import check_job_image
from backend.models.registry import ProgressFn


class JobCancelled(Exception):
    """Raised at the next progress step after a cancel request."""


class JobTimedOut(Exception):
    """Raised at the next progress step once the job is over its time limit."""


class ModelCache:
    """Models stay loaded between jobs, one per (name, device), built once even when jobs race for it.

    The per-model lock also serialises labs that temporarily hook a model. A computed-from-data model
    reports its build through the progress of the job that first needs it.
    """

    def __init__(self, maxsize: int = 32) -> None:
        self.maxsize = maxsize
        self._items: dict[tuple[str, str], tuple[LoadedModel, threading.Lock]] = {}
        self._build_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(
        self, name: str, device: str, progress: ProgressFn | None = None
    ) -> tuple[LoadedModel, threading.Lock]:
        key = (name, device)
        with self._lock:
            if key in self._items:
                return self._items[key]
            build_lock = self._build_locks.setdefault(key, threading.Lock())
        with build_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            module = create_model(name, device=device, progress=progress)
            item = (LoadedModel(name=name, entry=get_entry(name), module=module), threading.Lock())
            with self._lock:
                if len(self._items) >= self.maxsize:  # drop the oldest: a long-lived worker stays bounded
                    self._items.pop(next(iter(self._items)))
                self._items[key] = item
            return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def discard(self, name: str) -> None:
        """Forget one model on every device (e.g. its weights changed); the others stay loaded."""
        with self._lock:
            for key in [k for k in self._items if k[0] == name]:
                del self._items[key]


MODELS = ModelCache()


def load_model(name: str, device: str) -> LoadedModel:
    return MODELS.get(name, device)[0]


@contextmanager
def _unlocked_models(names: list[str], device: str, progress: ProgressFn) -> Iterator[list[LoadedModel]]:
    """The job's models without their locks, for a lab that locks each pass itself (`ctx.forward`)."""
    yield [
        MODELS.get(
            n,
            device,
            functools.partial(_slice, progress, i / len(names), (i + 1) / len(names), f"building {n}"),
        )[0]
        for i, n in enumerate(names)
    ]


def _batched_forward(device: str, model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """The model's output for x, in one pass with other jobs' inputs when they arrive together."""
    lock = MODELS.get(model.name, device)[1]

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.module(batch)

    # Under the model's lock: a hooking lab's hooks never see these rows.
    return BATCHER.forward((model.name, device), run, x, lock)


@contextmanager
def _locked_models(names: list[str], device: str, progress: ProgressFn) -> Iterator[list[LoadedModel]]:
    loaded = {}
    for i, n in enumerate(names):
        # Building (or computing) a model is the first slice of the job's progress.
        part = functools.partial(_slice, progress, i / len(names), (i + 1) / len(names), f"building {n}")
        loaded[n] = MODELS.get(n, device, part)
    with ExitStack() as stack:
        for n in sorted(set(names)):  # fixed order: no deadlock between concurrent jobs
            stack.enter_context(loaded[n][1])
        yield [loaded[n][0] for n in names]


def _slice(report: ProgressFn, lo: float, hi: float, what: str, fraction: float, message: str = "") -> None:
    report(0.05 * (lo + (hi - lo) * min(max(fraction, 0.0), 1.0)), f"{what}: {message}" if message else what)


def _no_progress(fraction: float, message: str = "") -> None:
    return None


def _scaled(report: ProgressFn, fraction: float, message: str = "") -> None:
    # Labs see progress in their own 0..1; keep the ends for loading and plotting.
    report(0.05 + 0.85 * min(max(fraction, 0.0), 1.0), message)


PublishFn = Callable[[dict[str, Any]], None]

# A worker records progress (and checks for a cancel request) at most this often; the UI asks 3× a second.
PROGRESS_EVERY_S = 0.05


def run_lab(
    lab_name: str,
    model_names: list[str],
    image: Image.Image | None,
    params: dict[str, Any] | None,
    *,
    text: str | None = None,
    settings: Settings | None = None,
    device: str | None = None,
    progress: ProgressFn | None = None,
    publish: PublishFn | None = None,
) -> dict[str, Any]:
    """Validate, run and plot one lab. Returns {"figures": [...], "metrics": {...}, "text": str|None}.

    `device` defaults to the settings' device (the worker's or the CLI's); `publish` receives each
    partial result the lab publishes, already drawn: {"figures", "metrics", "text", "step"}.
    """
    job = validate_job(lab_name, model_names, params, has_image=image is not None, text=text)
    lab, p = job.lab, job.params
    device = device or (settings or get_settings()).device
    report: ProgressFn = progress or _no_progress
    steps = 0

    def draw_partial(result: LabResult) -> None:
        nonlocal steps
        steps += 1
        if publish is not None:
            drawn = {"figures": lab.figures(result, p), "metrics": to_jsonable(result.metrics)}
            publish({**drawn, "text": result.text, "step": steps})

    report(0.0, "loading models")
    # No global no_grad: attribution labs need gradients; labs pick their own grad mode.
    models_for = _locked_models if lab.locks_models else _unlocked_models
    in_flight = nullcontext() if lab.locks_models else BATCHER.job()  # jobs that may join a batch
    with in_flight, models_for(job.models, device, report) as models:
        ctx = LabContext(
            models=models,
            image=image,
            device=torch.device(device),
            progress=functools.partial(_scaled, report),
            load_model=lambda n: load_model(n, device),
            text=job.text,
            publish=draw_partial,
            forward=LabContext.forward if lab.locks_models else functools.partial(_batched_forward, device),
        )
        result = lab.run(ctx, p)
    report(0.92, "drawing figures")
    figures = lab.figures(result, p)
    metrics, text = to_jsonable(result.metrics), result.text
    # --- issue 9: is the image like the models' training data? (backend/models/ood.py) ---
    if image is not None and model_names:
        entries = [get_entry(n) for n in model_names]
        ood = check_job_image(
            image, entries, lambda n: _locked_models(n, device, _no_progress), torch.device(device)
        )
        if ood is not None:
            metrics["ood"] = ood
            # False (unlike the training data) or None (not checked): the sentence opens the text.
            text = text if ood["in_distribution"] else f"{ood['sentence']} {text or ''}".strip()
    # --- end issue 9 ---
    report(1.0, "done")
    return {"figures": figures, "metrics": metrics, "text": text}


# Settings of the workers in this process, by rq worker name: a job runs with its worker's device.
_WORKER_SETTINGS: dict[str, Settings] = {}


def bind_worker(name: str, settings: Settings) -> None:
    _WORKER_SETTINGS[name] = settings


def unbind_worker(name: str) -> None:
    _WORKER_SETTINGS.pop(name, None)


def rq_job(
    lab_name: str,
    model_names: list[str],
    image_id: str | None,
    params: dict[str, Any] | None,
    text: str | None = None,
) -> dict:
    """Entry point enqueued on rq. Progress, partial results and a clear error go to job.meta."""
    from rq import get_current_job
    from rq.timeouts import JobTimeoutException

    from backend.jobs.images import load_image
    from backend.jobs.keys import cancel_key

    job = get_current_job()
    assert job is not None
    conn = job.connection
    settings = _WORKER_SETTINGS.get(job.worker_name or "") or get_settings()
    timeout = job.timeout if job.timeout and job.timeout > 0 else None
    started = reported = time.monotonic()

    def progress(fraction: float, message: str = "") -> None:
        nonlocal reported
        now = time.monotonic()
        if timeout is not None and now - started > timeout:
            raise JobTimedOut(f"job exceeded its time limit of {timeout} s")
        # Two Redis round trips per report: a short job's dozen reports were most of its overhead. So
        # a job reports (and looks for a cancel request) once it has run PROGRESS_EVERY_S, and then at
        # most that often; its end ("done", 100 %) is rq's own record.
        if now - reported < PROGRESS_EVERY_S or fraction >= 1.0:
            return
        reported = now
        if conn.exists(cancel_key(job.id)):
            raise JobCancelled("cancelled on request")
        job.meta.update(progress=round(float(fraction), 4), message=message)
        job.save_meta()

    def publish(partial: dict[str, Any]) -> None:
        job.meta.update(partial=partial)
        job.save_meta()

    try:
        image = load_image(conn, image_id) if image_id else None
        return run_lab(
            lab_name,
            model_names,
            image,
            params,
            text=text,
            settings=settings,
            progress=progress,
            publish=publish,
        )
    except JobRequestError as exc:  # checked at submission; here only if the catalog changed since
        job.meta.update(error=str(exc))
        job.save_meta()
        raise
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
