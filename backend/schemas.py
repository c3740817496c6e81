"""Request and response models of the HTTP API (see DESIGN.md for the contract).

This is the one definition of the contract: the backend builds its answers from these models and the
UI (`app/client.py`) parses them with the same ones. It imports pydantic only, so the UI stays free of
torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from backend.api.guards import IMAGE_ID_PATTERN

JobStatus = Literal["queued", "started", "finished", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL_STATUSES: frozenset[str] = frozenset({"finished", "failed", "cancelled"})
MAX_TEXT_CHARS = 500  # the longest text input any lab takes (a question, not a document)


class WorkerInfo(BaseModel):
    name: str
    device: str = Field(description="Where this worker runs its jobs: cpu, cuda or cuda:N")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    queue: Literal["embedded", "redis"]
    workers: int
    worker_info: list[WorkerInfo] = Field(default_factory=list, description="Each live worker and its device")


class ModelInfo(BaseModel):
    name: str
    family: str
    task: str
    dataset: str
    params: int | None = Field(description="Number of parameters (from the model card)")
    input_size: list[int]
    description: str
    citation: str
    class_names: list[str]
    card: dict[str, Any] | None = Field(description="Training card: data, seed, steps, accuracy, ECE, ...")
    regime: str = Field(default="standard", description='Training regime, e.g. "standard", "pgd eps=8/255"')
    architecture: dict[str, Any] | None = Field(
        default=None,
        description="Layers, heads, GPSA layers and patch grid of a transformer-style model "
        "(null otherwise); the UI bounds its layer and head fields with it",
    )
    source: str = Field(
        default="zoo", description="Where its parameters come from: zoo, file, hub or computed"
    )
    model_set: str = Field(
        default="zoo",
        description='Which set it belongs to: "zoo" (the shapes teaching zoo) or "imagenet" (photo models); '
        "the UI never mixes the two in one comparison",
    )
    available: bool = Field(default=True, description="Whether this server can run it now")
    unavailable_reason: str | None = Field(
        default=None, description="Why not, in one line (e.g. its weights are not in the local cache)"
    )


class TextInputSpec(BaseModel):
    """A lab's text input: what to ask the user and what to suggest."""

    label: str = "Question"
    placeholder: str = ""
    suggestions: list[str] = Field(default_factory=list, description="Templates offered to the user")
    required: bool = True
    max_chars: int = Field(default=200, ge=1, le=MAX_TEXT_CHARS)


class LabInfo(BaseModel):
    name: str
    title: str
    description: str = ""
    params_schema: dict[str, Any] = Field(default_factory=dict)
    model_tasks: list[str] = Field(default_factory=list)
    model_families: list[str] | None = None
    needs_image: bool = True
    text_input: TextInputSpec | None = Field(default=None, description="The lab's text input, if any")
    max_models: int = 4
    default_models: list[str] = Field(default_factory=list)
    lesson: str | None = Field(default=None, description="Markdown lesson text shown beside the lab")

    def accepts_model(self, task: str, family: str) -> bool:
        """Whether a model of this task and family can go into this lab."""
        return lab_accepts(self.model_tasks, self.model_families, task, family)


def lab_accepts(tasks: Sequence[str], families: Sequence[str] | None, task: str, family: str) -> bool:
    """The one rule for which models a lab takes: its tasks, and its families where it names any."""
    return task in tasks and (families is None or family in families)


class ExampleInfo(BaseModel):
    name: str
    title: str
    source: str
    image_id: str


class ImageCreated(BaseModel):
    image_id: str
    width: int
    height: int


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lab: str = Field(max_length=64, examples=["predict"])
    models: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=list, max_length=8, examples=[["cnn-shapes"]]
    )
    image_id: str | None = Field(default=None, pattern=IMAGE_ID_PATTERN, examples=["example-shapes-circle"])
    text: str | None = Field(
        default=None, max_length=MAX_TEXT_CHARS, description="The text input of labs that take one"
    )
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: int | None = Field(
        default=None,
        ge=1,
        le=24 * 3600,
        description="Stop the job after this many seconds (at most the server's limit)",
    )


class JobCreated(BaseModel):
    id: str
    status: Literal["queued"] = "queued"


class JobResult(BaseModel):
    figures: list[dict[str, Any]]
    metrics: dict[str, Any]
    text: str | None = None


class PartialResult(JobResult):
    step: int = Field(ge=1, description="How many partial results the lab has published so far")


class JobView(BaseModel):
    id: str
    lab: str
    status: JobStatus
    progress: float = Field(ge=0.0, le=1.0)
    message: str | None = None
    result: JobResult | None = None
    partial: PartialResult | None = Field(
        default=None, description="The latest partial result a running lab published (until it finishes)"
    )
    error: str | None = None


class ErrorItem(BaseModel):
    """One field error: where (`loc`), what (`msg`), and the offending input, cut to a short preview."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer of the API: a sentence, or a list of field errors (422)."""

    detail: str | list[ErrorItem]
