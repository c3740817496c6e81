"""Request and response models of the HTTP API (see DESIGN.md for the contract)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from backend.api.guards import IMAGE_ID_PATTERN


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    queue: Literal["embedded", "redis"]
    workers: int


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


class LabInfo(BaseModel):
    name: str
    title: str
    description: str
    params_schema: dict[str, Any]
    model_tasks: list[str]
    model_families: list[str] | None
    needs_image: bool
    max_models: int
    default_models: list[str]
    lesson: str | None = Field(description="Markdown lesson text shown beside the lab")


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


class JobView(BaseModel):
    id: str
    lab: str
    status: Literal["queued", "started", "finished", "failed", "cancelled"]
    progress: float = Field(ge=0.0, le=1.0)
    message: str | None = None
    result: JobResult | None = None
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
