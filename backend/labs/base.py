"""Lab registry and the small contract every lab follows.

A lab is one class with one verb, like a captum attribution method: `run(ctx, params)` computes arrays
and metrics (no plotting), `figures(result, params)` turns those arrays into Plotly JSON through the
shared builders in `backend.plots`. Labs never touch HTTP, queues or files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict
from torch import nn

from backend.models.registry import ModelEntry


class LabParams(BaseModel):
    """Base for every lab's Params: unknown fields are errors, so typos reach the user as a 422."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class LoadedModel:
    name: str
    entry: ModelEntry
    module: nn.Module


ProgressFn = Callable[[float, str], None]


@dataclass
class LabContext:
    models: list[LoadedModel]
    image: Image.Image | None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Call often: it reports progress (0..1) and raises when the job was cancelled or ran out of time.
    progress: ProgressFn = field(default=lambda fraction, message="": None)
    # Builds further models on demand (e.g. a reference model a lab needs); cached by the worker.
    load_model: Callable[[str], LoadedModel] | None = None


@dataclass
class LabResult:
    arrays: dict[str, Any]  # numpy arrays (possibly nested per model): everything the figures need
    metrics: dict[str, Any]  # JSON-serialisable numbers and short strings
    text: str | None = None  # a sentence or two for the reader


class Lab(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[LabParams]] = LabParams
    model_tasks: ClassVar[tuple[str, ...]] = ("classification",)
    # Families the lab can analyse; None means any model whose task fits.
    model_families: ClassVar[tuple[str, ...] | None] = None
    needs_image: ClassVar[bool] = True
    max_models: ClassVar[int] = 4
    default_models: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def run(self, ctx: LabContext, params: Any) -> LabResult: ...

    @abstractmethod
    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]: ...

    def accepts(self, entry: ModelEntry) -> bool:
        if entry.task not in self.model_tasks:
            return False
        return self.model_families is None or entry.family in self.model_families


_LABS: dict[str, Lab] = {}


class UnknownLab(KeyError):
    pass


def register_lab(cls: type[Lab]) -> type[Lab]:
    """Class decorator: instantiate once and add to the write-once registry."""
    if cls.name in _LABS:
        raise ValueError(f"lab {cls.name!r} is already registered")
    _LABS[cls.name] = cls()
    return cls


def _ensure_labs() -> None:
    import backend.labs.catalog  # noqa: F401  (registers every lab module)


def list_labs() -> list[Lab]:
    _ensure_labs()
    return list(_LABS.values())


def get_lab(name: str) -> Lab:
    _ensure_labs()
    try:
        return _LABS[name]
    except KeyError:
        raise UnknownLab(f"unknown lab {name!r}; known labs: {', '.join(sorted(_LABS))}") from None


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
