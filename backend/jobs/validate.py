"""Job request validation, defined once: the API calls it before queueing, `run_lab` (so the worker and
`biaslab run`) calls it before running. Every rejection carries the HTTP status it maps to and a
message a person can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from backend.api.guards import number_errors
from backend.labs import Lab, LabParams, UnknownLab, get_lab
from backend.models import UnknownModel, get_entry
from backend.models.registry import unavailable_reason


class JobRequestError(ValueError):
    """A job request that cannot run. `detail` is a sentence, or a list of field errors (422)."""

    def __init__(self, status: int, detail: str | list[dict[str, Any]]) -> None:
        super().__init__(detail if isinstance(detail, str) else _field_errors_sentence(detail))
        self.status = status
        self.detail = detail


def _field_errors_sentence(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'][2:])}: {e['msg']}" for e in errors]
    return "invalid parameters: " + "; ".join(parts)


@dataclass(frozen=True)
class ValidJob:
    lab: Lab
    models: list[str]
    params: LabParams
    text: str | None


def validate_job(
    lab_name: str,
    models: list[str],
    params: dict[str, Any] | None,
    *,
    image_id: str | None = None,
    has_image: bool | None = None,
    text: str | None = None,
    image_exists: Callable[[str], bool] | None = None,
) -> ValidJob:
    """Check a request against the lab's contract. `has_image` defaults to `image_id is not None`."""
    try:
        lab = get_lab(lab_name)
    except UnknownLab as exc:
        raise JobRequestError(404, str(exc)) from None
    if len(models) > lab.max_models:
        raise JobRequestError(422, f"lab {lab.name!r} takes at most {lab.max_models} models")
    if lab.max_models > 0 and not models:
        raise JobRequestError(422, f"choose at least one model for lab {lab.name!r}")
    if len(set(models)) != len(models):
        raise JobRequestError(422, f"each model can be chosen once; got {', '.join(models)}")
    for name in models:
        try:
            entry = get_entry(name)
        except UnknownModel as exc:
            raise JobRequestError(404, str(exc)) from None
        reason = unavailable_reason(entry)
        if reason is not None:  # registered (an opt-in set) but not runnable on this machine
            raise JobRequestError(409, f"model {name!r} is not available on this server: {reason}")
        if not lab.accepts(entry):
            allowed = ", ".join(lab.model_families or lab.model_tasks)
            raise JobRequestError(
                422, f"lab {lab.name!r} cannot analyse {name!r} ({entry.family}); it takes {allowed}"
            )
    image_given = has_image if has_image is not None else image_id is not None
    if lab.needs_image and not image_given:
        raise JobRequestError(422, f"lab {lab.name!r} needs an image: upload one or pick an example")
    if image_id and image_exists is not None and not image_exists(image_id):
        raise JobRequestError(404, f"unknown or expired image {image_id!r}; upload it again")
    text = _check_text(lab, text)
    # NaN/Infinity and integers past int64 pass pydantic's plain `float`/`int` and would fail later.
    bad_numbers = number_errors(params or {}, ("body", "params"))
    if bad_numbers:
        raise JobRequestError(422, bad_numbers)
    try:
        parsed = lab.Params.model_validate(params or {})
    except ValidationError as exc:
        errors = [
            {
                "type": e["type"],
                "loc": ["body", "params", *e["loc"]],
                "msg": e["msg"],
                "input": e.get("input"),
            }
            for e in exc.errors(include_url=False)
        ]
        raise JobRequestError(422, errors) from None
    problems = lab.request_problems(parsed, list(models))
    if problems:
        raise JobRequestError(422, "; ".join(problems))
    return ValidJob(lab=lab, models=list(models), params=parsed, text=text)


def _check_text(lab: Lab, text: str | None) -> str | None:
    spec = lab.text_input
    text = text.strip() if text is not None else None
    if spec is None:
        if text:
            raise JobRequestError(422, f"lab {lab.name!r} takes no text input")
        return None
    if spec.required and not text:
        raise JobRequestError(422, f"lab {lab.name!r} needs a text input: {spec.label.lower()}")
    if text and len(text) > spec.max_chars:
        raise JobRequestError(
            422,
            f"{spec.label} is {len(text)} characters long; lab {lab.name!r} takes {spec.max_chars} at most",
        )
    return text or None
