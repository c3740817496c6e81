"""The part of `go.Figure`'s API that backend/plots.py uses, on plain dicts.

Plotly validates every property on every `update_*` call and in `make_subplots`: for the attention lab
that took three times as long as the lab's own computation. Builders that run on every job build a
`DictFigure` instead, which `plots.to_json` serialises exactly as it would the Plotly figure (a test
compares the two). Keys are split at underscores as Plotly's "magic underscores" are (`title_pad_b=72`
is `title.pad.b`), so only pass properties without an underscore in their own name.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any


@functools.cache
def _subplots_json(rows: int, cols: int, titles: int, spacing: tuple[tuple[str, float], ...]) -> str:
    # Computed once per grid shape (about 40 ms per call), with placeholder titles filled in later.
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[f"\0{i}" for i in range(titles)], **dict(spacing)
    )
    return json.dumps(fig.layout.to_plotly_json())


def _merge(target: dict[str, Any], props: Mapping[str, Any]) -> None:
    """Plotly's update: nested dicts merge, anything else replaces."""
    for key, value in props.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def _expand(props: Mapping[str, Any]) -> dict[str, Any]:
    """Magic underscores to nesting, and a plain string title to {"text": ...}, as Plotly reads them."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        *path, last = key.split("_")
        if isinstance(value, Mapping):
            value = _expand(value)
        elif last == "title" and isinstance(value, str):
            value = {"text": value}
        node = out
        for part in path:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            _merge(node[last], value)
        else:
            node[last] = value
    return out


class DictFigure:
    def __init__(self, layout: dict[str, Any] | None = None, cols: int = 1) -> None:
        self.data: list[dict[str, Any]] = []
        self.layout: dict[str, Any] = layout or {}
        self._cols = cols

    @classmethod
    def subplots(cls, rows: int, cols: int, subplot_titles: Sequence[str], **spacing: float) -> DictFigure:
        """`make_subplots(rows, cols, subplot_titles=..., **spacing)`."""
        layout: dict[str, Any] = json.loads(
            _subplots_json(rows, cols, len(subplot_titles), tuple(sorted(spacing.items())))
        )
        for note in layout.get("annotations", []):
            note["text"] = subplot_titles[int(note["text"][1:])]
        layout["annotations"] = [a for a in layout.get("annotations", []) if a["text"]]  # as make_subplots
        return cls(layout, cols)

    def _suffix(self, row: int, col: int) -> str:
        k = (row - 1) * self._cols + col
        return "" if k == 1 else str(k)

    def add_trace(self, trace: Mapping[str, Any], row: int | None = None, col: int | None = None) -> None:
        trace = dict(trace)
        if row is not None and col is not None:
            sx = self._suffix(row, col)
            trace.update(xaxis=f"x{sx}", yaxis=f"y{sx}")
        self.data.append(trace)

    def update_layout(self, props: Mapping[str, Any] | None = None, **kw: Any) -> None:
        _merge(self.layout, _expand({**(props or {}), **kw}))

    def _update_axes(self, letter: str, row: int | None, col: int | None, props: Mapping[str, Any]) -> None:
        if row is not None and col is not None:
            keys = [f"{letter}axis{self._suffix(row, col)}"]
        else:
            keys = [k for k in self.layout if re.fullmatch(letter + r"axis\d*", k)] or [f"{letter}axis"]
        for key in keys:
            _merge(self.layout.setdefault(key, {}), _expand(props))

    def update_xaxes(self, row: int | None = None, col: int | None = None, **props: Any) -> None:
        self._update_axes("x", row, col, props)

    def update_yaxes(self, row: int | None = None, col: int | None = None, **props: Any) -> None:
        self._update_axes("y", row, col, props)

    def update_annotations(self, **props: Any) -> None:
        for note in self.layout.get("annotations", []):
            _merge(note, _expand(props))

    def update_traces(self, selector: Mapping[str, Any], **props: Any) -> None:
        for trace in self.data:
            if all(trace.get(k) == v for k, v in selector.items()):
                _merge(trace, _expand(props))

    def domains(self, row: int, col: int) -> tuple[list[float], list[float]]:
        """The x and y domains of a subplot cell (`fig.get_subplot(row, col).xaxis.domain`, ...)."""
        sx = self._suffix(row, col)
        return self.layout[f"xaxis{sx}"]["domain"], self.layout[f"yaxis{sx}"]["domain"]

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "layout": self.layout}
