"""Request checks that need no lab, model or queue: id formats, finite numbers, integer range, and
error inputs cut down to a preview.

Pure functions without FastAPI, so the one request-validation function shared by the API, the CLI
and the worker can call them as they are.
"""

from __future__ import annotations

import json
import math
from typing import Any

# rq's own id alphabet; anything else made rq raise ValueError (a 500) before this check existed.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Content ids (hex) and example ids ("example-shapes-circle").
IMAGE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"

# Integers a lab may pass to numpy/torch (seeds, sizes): the signed 64-bit range.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# Longest error `input` sent back; a 24 MB body used to come back whole inside its 422.
MAX_ECHO_CHARS = 200


def number_errors(value: Any, loc: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Field errors (FastAPI's 422 shape) for every NaN/±Infinity and every integer outside int64.

    Python's json module reads `NaN` and `Infinity` although JSON has neither; a lab would fail on
    them later, or the response would fail to serialise them (a 500).
    """
    errors: list[dict[str, Any]] = []
    if isinstance(value, bool):
        return errors
    if isinstance(value, float) and not math.isfinite(value):
        msg = "Input should be a finite number"
        errors.append({"type": "finite_number", "loc": list(loc), "msg": msg, "input": str(value)})
    elif isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        errors.append(
            {
                "type": "int_range",
                "loc": list(loc),
                "msg": "Input should be an integer between -2**63 and 2**63-1",
                "input": compact_input(value),
            }
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            errors += number_errors(item, (*loc, str(key)))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            errors += number_errors(item, (*loc, i))
    return errors


def compact_input(value: Any, limit: int = MAX_ECHO_CHARS) -> Any:
    """An error's offending input as sent back: small JSON values as they are, anything else (large,
    non-finite, not JSON) as a short string preview."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        text = str(value) if value.bit_length() < 2000 else f"<integer of {value.bit_length()} bits>"
        return _cut(text, limit)
    try:
        text = json.dumps(value, allow_nan=False, default=str)
    except (ValueError, TypeError, RecursionError):
        try:
            return _cut(repr(value), limit)
        except (ValueError, RecursionError):  # e.g. an integer too long to print
            return f"<{type(value).__name__}>"
    if len(text) <= limit:
        return value
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"
