"""Shareable page state in the URL query string.

`?lab=predict&models=cnn-shapes,deit-shapes&image=example-shapes-star&top_k=3` reopens the Predict tab
with those two models, that example image and top-k 3. Lab params are plain keys next to the three
reserved ones, so a link stays readable on a slide. The page reads the query on load
(`gr.Request.query_params`) and rewrites it with `history.replaceState` whenever a control changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

RESERVED = ("lab", "models", "image")

# Run in the browser after the server computed the new query string (the input is that string).
REPLACE_URL_JS = """
(query) => {
  const url = query ? `${window.location.pathname}?${query}` : window.location.pathname;
  if (url !== window.location.pathname + window.location.search) {
    window.history.replaceState(window.history.state, "", url);
  }
  return [];
}
"""


@dataclass(frozen=True)
class UrlState:
    lab: str | None = None
    models: tuple[str, ...] | None = None  # None: not in the URL (use the lab's defaults)
    image: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # raw strings; typed by the lab's specs


def parse_query(query: Mapping[str, str] | str) -> UrlState:
    items = dict(parse_qsl(query.lstrip("?"), keep_blank_values=True)) if isinstance(query, str) else query
    models_raw = items.get("models")
    models = None
    if models_raw is not None:
        models = tuple(m.strip() for m in str(models_raw).split(",") if m.strip())
    params = {str(k): str(v) for k, v in items.items() if k not in RESERVED}
    return UrlState(
        lab=items.get("lab") or None,
        models=models,
        image=items.get("image") or None,
        params=params,
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def encode_query(
    lab: str, models: list[str] | tuple[str, ...] | None, image: str | None, params: Mapping[str, Any]
) -> str:
    pairs: list[tuple[str, str]] = [("lab", lab)]
    if models is not None:
        pairs.append(("models", ",".join(models)))
    if image:
        pairs.append(("image", image))
    pairs.extend((k, _text(v)) for k, v in params.items() if v is not None and k not in RESERVED)
    return urlencode(pairs, safe=",")


def with_image(query: str, image: str | None) -> str:
    """The same query with its image replaced (or removed)."""
    pairs = [(k, v) for k, v in parse_qsl(query.lstrip("?"), keep_blank_values=True) if k != "image"]
    if image:
        at = max((i + 1 for i, (k, _) in enumerate(pairs) if k in ("lab", "models")), default=0)
        pairs.insert(at, ("image", image))
    return urlencode(pairs, safe=",")
