"""One error shape for every answer that is not a success, and the OpenAPI entries that describe it.

Handlers: field errors (422) with their inputs cut to a preview, and "queue unavailable" (503)
without Redis's address or the exception text, which name internal hosts.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from backend.api.guards import compact_input
from backend.schemas import ErrorResponse

log = logging.getLogger("biaslab.api")

QUEUE_DOWN_RETRY_AFTER_S = 5

_DESCRIPTIONS = {
    400: "Malformed request body",
    404: "Unknown lab, model, image or job (or an expired one)",
    409: "The job already ended; nothing to cancel",
    413: "Request body or image too large",
    415: "Not a PNG, JPEG or WEBP image",
    422: "Invalid field; `detail` lists each error with its location",
    429: "Too many requests or queue full; see the Retry-After header",
    503: "The job queue (Redis) is unavailable; retry shortly",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: each status with the shared ErrorResponse schema."""
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}


def field_error(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic/FastAPI error dict reduced to ErrorItem, with a JSON-safe, bounded `input`."""
    msg = str(error.get("msg", "invalid value"))
    ctx = error.get("ctx")
    if isinstance(ctx, dict) and "error" in ctx and error.get("type") == "json_invalid":
        msg = f"{msg}: {ctx['error']}"  # e.g. "JSON decode error: Expecting value"
    return {
        "type": str(error.get("type", "value_error")),
        "loc": [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
        "msg": msg,
        "input": compact_input(error.get("input")),
    }


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [field_error(e) for e in exc.errors()]}, 422)

    @app.exception_handler(redis.RedisError)
    async def queue_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "the job queue is unavailable right now; retry in a few seconds"},
            503,
            headers={"Retry-After": str(QUEUE_DOWN_RETRY_AFTER_S)},
        )
