"""Typed HTTP client of the Inductive Bias Lab API (the UI's only way to reach models).

Every failure becomes an `ApiError` whose message a person can act on: FastAPI's `{"detail": ...}`
bodies (a string or a list of field errors) are flattened into one sentence, and a server that does
not answer becomes "the API at ... is not reachable". The UI shows `str(error)`, never a traceback.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from backend.schemas import TERMINAL_STATUSES as TERMINAL
from backend.schemas import JobView as ApiJobView
from backend.schemas import LabInfo


class ModelCard(BaseModel):
    """One zoo model as `GET /api/models` describes it."""

    name: str
    family: str
    task: str
    dataset: str = ""
    params: int | None = None
    input_size: list[int] = Field(default_factory=list)
    description: str = ""
    citation: str = ""
    class_names: list[str] = Field(default_factory=list)
    card: dict[str, Any] | None = None
    regime: str = "standard"
    source: str = "zoo"
    # {"layers", "heads", "gpsa_layers", "patch_grid"} when the API reports it: bounds layer/head fields.
    architecture: dict[str, Any] | None = None
    model_set: str = "zoo"  # "zoo" (shapes teaching zoo) or "imagenet" (photo models): never mixed in a run
    available: bool = True
    unavailable_reason: str | None = None

    @property
    def arch(self) -> dict[str, Any] | None:
        found = self.architecture or (self.card or {}).get("architecture")
        return found if isinstance(found, dict) else None

    @property
    def test_accuracy(self) -> float | None:
        value = (self.card or {}).get("test_accuracy")
        return float(value) if isinstance(value, int | float) else None

    @property
    def seed_spread(self) -> tuple[float, float, int] | None:
        """(mean, sample std, number of seeds) of test accuracy, where `zoo seeds` measured it."""
        summary = ((self.card or {}).get("seeds") or {}).get("summary") or {}
        acc = summary.get("test_accuracy") or {}
        if not isinstance(acc.get("mean"), int | float) or not isinstance(acc.get("std"), int | float):
            return None
        n = int(summary.get("n", 0))
        return (float(acc["mean"]), float(acc["std"]), n) if n >= 2 else None  # one seed: no spread

    @property
    def ece(self) -> float | None:
        value = (self.card or {}).get("ece")
        return float(value) if isinstance(value, int | float) else None


class LabSpec(LabInfo):
    """One lab as `GET /api/labs` describes it (the API's own schema); the UI builds its page from it."""

    def accepts(self, model: ModelCard) -> bool:
        return self.accepts_model(model.task, model.family)


class Example(BaseModel):
    name: str
    title: str
    source: str = ""
    image_id: str


class JobView(ApiJobView):
    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class ApiError(Exception):
    """An API call that failed, with a message for people (and the HTTP status, 0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


def _field_error(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", []) if p not in ("body", "query", "path")]
    if loc and loc[0] == "params":
        loc = loc[1:]
    where = ".".join(loc)
    msg = str(err.get("msg", "invalid value"))
    return f"{where}: {msg}" if where else msg


def error_message(response: httpx.Response) -> str:
    """FastAPI error body -> one readable sentence (falls back to the status line)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        parts = [_field_error(e) if isinstance(e, dict) else str(e) for e in detail]
        return "invalid parameters: " + "; ".join(parts)
    reason = response.reason_phrase or "error"
    return f"the API answered {response.status_code} {reason}"


class ApiClient:
    """Thin synchronous client; one instance per UI, safe to share between Gradio handler threads."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, f"/api{path}", **kwargs)
        except httpx.TimeoutException:
            raise ApiError(f"the API at {self.base_url} did not answer in time; try again") from None
        except httpx.HTTPError as exc:
            raise ApiError(
                f"the API at {self.base_url} is not reachable ({type(exc).__name__}); is the server running?"
            ) from None
        if response.status_code >= 400:
            raise ApiError(error_message(response), response.status_code)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the API answered {path} with something that is not JSON") from None

    @staticmethod
    def _parse(model: type[Any], data: Any, what: str) -> Any:
        try:
            if isinstance(data, list):
                return [model.model_validate(item) for item in data]
            return model.model_validate(data)
        except ValidationError as exc:
            raise ApiError(
                f"the API's answer for {what} has an unexpected shape: {exc.errors()[0]['msg']}"
            ) from None

    # -- endpoints ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        data = self._json("GET", "/health")
        return data if isinstance(data, dict) else {}

    def models(self) -> list[ModelCard]:
        result: list[ModelCard] = self._parse(ModelCard, self._json("GET", "/models"), "models")
        return result

    def labs(self) -> list[LabSpec]:
        result: list[LabSpec] = self._parse(LabSpec, self._json("GET", "/labs"), "labs")
        return result

    def examples(self) -> list[Example]:
        result: list[Example] = self._parse(Example, self._json("GET", "/examples"), "examples")
        return result

    def image_bytes(self, image_id: str) -> bytes:
        return self._request("GET", f"/images/{image_id}").content

    def upload_image(self, data: bytes, filename: str = "upload", content_type: str | None = None) -> str:
        files = {"file": (filename, data, content_type or "application/octet-stream")}
        body = self._json("POST", "/images", files=files)
        image_id = body.get("image_id") if isinstance(body, dict) else None
        if not isinstance(image_id, str):
            raise ApiError("the API accepted the upload but returned no image id")
        return image_id

    def submit_job(
        self,
        lab: str,
        models: list[str],
        image_id: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        text: str | None = None,
        client_ip: str | None = None,
    ) -> str:
        """Queue a job; `client_ip` is the student's address, so the API's per-client limit applies to
        each browser rather than to the UI server that forwards them all."""
        payload: dict[str, Any] = {"lab": lab, "models": list(models), "params": dict(params or {})}
        if image_id:
            payload["image_id"] = image_id
        if text:
            payload["text"] = text
        headers = {"X-Forwarded-For": client_ip} if client_ip else None
        body = self._json("POST", "/jobs", json=payload, headers=headers)
        job_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(job_id, str):
            raise ApiError("the API accepted the job but returned no job id")
        return job_id

    def job(self, job_id: str, wait: float = 0.0, until: str = "end") -> JobView:
        """The job's state; with `wait`, once it ends (`until="change"`: or a queued job starts), or after
        `wait` seconds, whichever comes first."""
        params = {"wait": wait, "until": until} if wait > 0 else None
        data = self._json("GET", f"/jobs/{job_id}", params=params)
        result: JobView = self._parse(JobView, data, "job status")
        return result

    def cancel_job(self, job_id: str) -> None:
        self._request("DELETE", f"/jobs/{job_id}")
