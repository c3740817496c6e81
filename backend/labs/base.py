"""Lab registry and the small contract every lab follows.

A lab is one class with one verb, like a captum attribution method: `run(ctx, params)` computes arrays
and metrics (no plotting), `figures(result, params)` turns those arrays into Plotly JSON through the
shared builders in `backend.plots`. Labs never touch HTTP, queues or files.

A lab declares its inputs (an image, a text such as a question, or none) and may publish partial
results while it runs (`ctx.publish`): a denoising trajectory step by step, an answer token by token.

This module is a leaf of the labs package: `backend.labs` imports every lab module, each of which
registers itself here with `@register_lab`.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict
from torch import nn

from backend.models.registry import ModelEntry, ProgressFn
from backend.registry import NotRegistered, Registry
from backend.schemas import LabInfo, TextInputSpec, lab_accepts


class LabParams(BaseModel):
    """Base for every lab's Params: unknown fields are errors, so typos reach the user as a 422."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class LoadedModel:
    name: str
    entry: ModelEntry
    module: nn.Module


@dataclass
class LabResult:
    arrays: dict[str, Any]  # numpy arrays (possibly nested per model): everything the figures need
    metrics: dict[str, Any]  # JSON-serialisable numbers and short strings
    text: str | None = None  # a sentence or two for the reader


def _ignore_progress(fraction: float, message: str = "") -> None:
    return None


def _ignore_partial(result: LabResult) -> None:
    return None


def _plain_forward(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    return model.module(x)


@dataclass
class LabContext:
    models: list[LoadedModel]
    image: Image.Image | None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Call often: it reports progress (0..1) and raises when the job was cancelled or ran out of time.
    progress: ProgressFn = _ignore_progress
    # Builds further models on demand (e.g. a reference model a lab needs); cached by the worker.
    load_model: Callable[[str], LoadedModel] | None = None
    text: str | None = None  # the lab's text input (a question), when it declares one
    # Publish a partial result: the runner draws it with the lab's `figures` and shows it at once.
    publish: Callable[[LabResult], None] = _ignore_partial
    # `model.module(x)` for a lab that never hooks its models (`locks_models = False`): the worker may run
    # it in one batched pass with other jobs' inputs (backend/jobs/batching.py). Call it under no_grad.
    forward: Callable[[LoadedModel, torch.Tensor], torch.Tensor] = _plain_forward


class Lab(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[LabParams]] = LabParams
    model_tasks: ClassVar[tuple[str, ...]] = ("classification",)
    # Families the lab can analyse; None means any model whose task fits.
    model_families: ClassVar[tuple[str, ...] | None] = None
    needs_image: ClassVar[bool] = True
    # A text input (a question, a prompt), or None when the lab takes no text.
    text_input: ClassVar[TextInputSpec | None] = None
    max_models: ClassVar[int] = 4
    default_models: ClassVar[tuple[str, ...]] = ()
    # True: the job holds its models' locks throughout, so it may hook them. False: the lab only runs
    # its models through `ctx.forward`, which locks a model per pass, so concurrent jobs can share passes.
    locks_models: ClassVar[bool] = True

    @abstractmethod
    def run(self, ctx: LabContext, params: Any) -> LabResult: ...

    @abstractmethod
    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]: ...

    def request_problems(self, params: Any, models: list[str]) -> list[str]:
        """What stops these settings from running well on these models, in words; [] if nothing.

        Field bounds limit each parameter alone. This catches what only the combination shows: work
        that multiplies (steps × models) past what one job may cost on a CPU worker, or a layer or head
        a chosen model does not have. Validation refuses such a job with a 422 naming the field.
        """
        return []

    def accepts(self, entry: ModelEntry) -> bool:
        # Not through info(): that builds the whole LabInfo, schema included, for every model of every job.
        return lab_accepts(self.model_tasks, self.model_families, entry.task, entry.family)

    def info(self, lesson: str | None = None) -> LabInfo:
        """The lab's metadata as the API, the CLI and the UI see it: the one definition of the contract."""
        return LabInfo(
            name=self.name,
            title=self.title,
            description=self.description,
            params_schema=_params_schema(self.Params),
            model_tasks=list(self.model_tasks),
            model_families=list(self.model_families) if self.model_families is not None else None,
            needs_image=self.needs_image,
            text_input=self.text_input,
            max_models=self.max_models,
            default_models=list(self.default_models),
            lesson=lesson,
        )


@functools.cache
def _params_schema_text(params: type[BaseModel]) -> str:
    return json.dumps(params.model_json_schema())


def _params_schema(params: type[BaseModel]) -> dict[str, Any]:
    # Generating a JSON schema took longer than the rest of a small job's validation; each caller
    # gets its own copy to change.
    out: dict[str, Any] = json.loads(_params_schema_text(params))
    return out


class UnknownLab(NotRegistered):
    pass


_LABS: Registry[Lab] = Registry("lab", UnknownLab)


def register_lab(cls: type[Lab]) -> type[Lab]:
    """Class decorator: instantiate once and add to the write-once registry."""
    _LABS.add(cls.name, cls())
    return cls


def list_labs() -> list[Lab]:
    return list(_LABS)


def get_lab(name: str) -> Lab:
    return _LABS.get(name)


def to_jsonable(value: Any) -> Any:
    """Metrics may hold numpy scalars/arrays; make them plain JSON."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    return value
