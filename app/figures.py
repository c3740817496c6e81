"""Job results -> what the page shows and downloads: Plotly figures, alt text, a metrics table, files.

Figures arrive as Plotly JSON dicts (the backend builds them in `backend/plots.py`). Here they are only
restyled for a projector (larger type, the Okabe-Ito colour-blind-safe palette for traces without their
own colours) and exported; no figure is drawn by hand in the UI.
"""

from __future__ import annotations

import functools
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from gradio.components.plot import PlotData
from plotly.offline import get_plotlyjs

# Okabe & Ito (2008), "Color Universal Design": distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MIN_FONT_SIZE = 15


def alt_text(figure: Mapping[str, Any], index: int = 0) -> str:
    """`layout.meta.alt`, else the title, else "Figure n"."""
    layout = figure.get("layout") or {}
    meta = layout.get("meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("alt"), str) and meta["alt"].strip():
        return str(meta["alt"]).strip()
    title = layout.get("title")
    text = title.get("text") if isinstance(title, Mapping) else title
    if isinstance(text, str) and text.strip():
        return _strip_tags(text).strip()
    return f"Figure {index + 1}"


def notice_of(figure: Mapping[str, Any]) -> str:
    """The figure's "what to notice" sentence(s) (`layout.meta.notice`, set by backend.plots), or ""."""
    meta = (figure.get("layout") or {}).get("meta")
    note = meta.get("notice") if isinstance(meta, Mapping) else None
    return note.strip() if isinstance(note, str) else ""


def _strip_tags(text: str) -> str:
    out, inside = [], False
    for ch in text:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
        elif not inside:
            out.append(ch)
    return "".join(out)


def figure_title(figure: Mapping[str, Any]) -> str:
    """The figure's title as plain text (line breaks become spaces), or ""."""
    title = (figure.get("layout") or {}).get("title")
    text = title.get("text") if isinstance(title, Mapping) else title
    return " ".join(_strip_tags(text.replace("<br>", " ")).split()) if isinstance(text, str) else ""


def styled(figure: Mapping[str, Any]) -> dict[str, Any]:
    """Plotly JSON -> Plotly JSON styled for a projector (a new dict; `figure` is left as it was).

    The title is taken out of the chart: the page and the download show it as HTML above the chart
    (`figure_title`), where the browser wraps it to any width. Inside the SVG, Plotly does not wrap, and a
    long title ran into panel titles, legends and sliders at some width or other. The restyling edits
    the dict: building a `go.Figure` from it validated every property again, about 60 ms per figure.
    """
    fig: dict[str, Any] = json.loads(json.dumps(figure))  # a deep copy the caller's dict cannot see
    if not isinstance(fig.get("data", []), list):
        raise ValueError("a figure's data must be a list of traces")
    layout: dict[str, Any] = fig.setdefault("layout", {})
    meta = dict(layout["meta"]) if isinstance(layout.get("meta"), dict) else {}
    if not meta.get("alt"):
        meta["alt"] = alt_text(figure)
    if layout.get("colorway") is None:
        layout["colorway"] = OKABE_ITO
    font = dict(layout.get("font") or {})
    if not isinstance(font.get("size"), int | float) or font["size"] < MIN_FONT_SIZE:
        font["size"] = MIN_FONT_SIZE
    layout["font"] = font
    # Backend widths suit a standalone file; in the page a fixed width overflows the results column.
    # The width is kept as `meta.min_width`: below 3/4 of it (a phone) the page scrolls the chart
    # sideways instead of squeezing its panels and labels together.
    width = layout.pop("width", None)
    if isinstance(width, int | float) and width > 0:
        meta["min_width"] = int(width)
    layout["meta"], layout["autosize"] = meta, True
    title = layout.get("title")
    if isinstance(title, str):
        title = {"text": title}
    if isinstance(title, dict) and title.get("text"):
        # Plotly's defaults: 450 px high, 100 px top margin. The plot area keeps its height, so
        # legends and sliders placed below it in fractions of that height stay where they were drawn.
        margin = dict(layout.get("margin") or {})
        old_top = margin["t"] if margin.get("t") is not None else 100
        new_top = _top_margin(layout)
        height = layout.get("height")
        if isinstance(height, int | float) and height > 0:
            layout["height"] = int(height - (old_top - new_top))
        layout["title"] = {k: v for k, v in title.items() if k != "text"}
        layout["margin"] = {**margin, "t": new_top}
    return fig


def to_figure(figure: Mapping[str, Any]) -> go.Figure:
    """`styled(figure)` as a go.Figure (for the downloads); unknown properties are skipped, not fatal."""
    return go.Figure(styled(figure), skip_invalid=True)


def plot_data(figure: Mapping[str, Any]) -> PlotData:
    """`styled(figure)` as gr.Plot's own payload: the JSON goes to the page without a go.Figure."""
    return PlotData(type="plotly", plot=pio.to_json(styled(figure), validate=False, engine="orjson"))


def _top_margin(layout: Mapping[str, Any]) -> int:
    """Room above the plot area without a title: the panel titles of the top row (annotations that sit on
    the top edge), a horizontal legend placed above the plot, or Plotly's modebar."""
    font = (layout.get("font") or {}).get("size") or MIN_FONT_SIZE
    lines = 0
    for ann in layout.get("annotations") or ():
        if ann.get("yref") == "paper" and ann.get("yanchor") == "bottom" and (ann.get("y") or 0) >= 0.9:
            lines = max(lines, str(ann.get("text") or "").count("<br>") + 1)
    legend = layout.get("legend") or {}
    if legend.get("orientation") == "h" and (legend.get("y") or 0) > 1:
        lines += 2
    return int(max(36, lines * 1.4 * (font + 1) + 16))


def ood_html(metrics: Mapping[str, Any]) -> str:
    """The out-of-distribution notice for a result (`metrics["ood"]`, added by the worker), or ""."""
    ood = metrics.get("ood")
    if not isinstance(ood, Mapping) or ood.get("in_distribution") is not False:
        return ""
    sentence = html.escape(str(ood.get("sentence", "This image is unlike the training data.")))
    score, threshold = ood.get("score"), ood.get("threshold")
    detail = ""
    if isinstance(score, int | float) and isinstance(threshold, int | float) and threshold > 0:
        detail = (
            f'<span class="bl-ood-detail">Distance to the nearest training images: {score:.2f}, '
            f"{score / threshold:.1f}× the largest distance 99 % of held-out training images reach.</span>"
        )
    return (
        '<div class="bl-ood" role="alert" data-ood="true"><strong>Not like the training data.</strong> '
        f"{sentence} {detail}</div>"
    )


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        shown = ", ".join(_cell(v) for v in value[:6])
        return f"[{shown}{', …' if len(value) > 6 else ''}]"
    if isinstance(value, Mapping):
        return html.escape(json.dumps(value)[:80])
    return html.escape(str(value)).replace("|", "\\|")


def _flatten(prefix: str, value: Any, rows: list[tuple[str, Any]]) -> None:
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    else:
        rows.append((prefix, value))


def metrics_markdown(metrics: Mapping[str, Any]) -> str:
    """A Markdown table: one column per model when metrics are {model: {name: scalar}}, else key/value."""
    metrics = {k: v for k, v in metrics.items() if k != "ood"}  # shown as its own notice
    if not metrics:
        return ""
    per_model = all(isinstance(v, Mapping) for v in metrics.values())
    if per_model:
        models = list(metrics)
        names: list[str] = []
        flat: dict[str, dict[str, Any]] = {}
        for model in models:
            rows: list[tuple[str, Any]] = []
            _flatten("", metrics[model], rows)
            flat[model] = dict(rows)
            names.extend(n for n, _ in rows if n not in names)
        if len(names) <= 30:
            head = "| metric | " + " | ".join(_cell(m) for m in models) + " |"
            sep = "|---|" + "---|" * len(models)
            body = [
                f"| {_cell(n)} | " + " | ".join(_cell(flat[m].get(n, "")) for m in models) + " |"
                for n in names
            ]
            return "\n".join([head, sep, *body])
    rows = []
    _flatten("", dict(metrics), rows)
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows[:60]]
    if len(rows) > 60:
        lines.append(f"| … | {len(rows) - 60} more in the JSON download |")
    return "\n".join(lines)


@functools.cache
def _plotly_js_tag() -> str:
    """plotly.js (4.8 MB) for inlining: read from plotly's package once per process, not once per job."""
    return f'<script charset="utf-8" type="text/javascript">{get_plotlyjs()}</script>'


def report_html(
    figures: Sequence[Mapping[str, Any]],
    *,
    title: str,
    subtitle: str = "",
    text: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """One standalone HTML file: every figure (plotly.js inlined once, so it opens offline) + metrics."""
    parts = []
    for i, figure in enumerate(figures):
        # The page's own payload (no go.Figure: Plotly's validation cost more than writing the file).
        div = pio.to_html(
            styled(figure), validate=False, full_html=False, include_plotlyjs=False, default_width="100%"
        )
        alt = html.escape(alt_text(figure, i))
        caption = html.escape(figure_title(figure) or alt_text(figure, i))
        parts.append(
            f'<figure role="img" aria-label="{alt}"><figcaption>{caption}</figcaption>{div}</figure>'
        )
    metrics_block = ""
    if metrics:
        metrics_block = f"<h2>Metrics</h2><pre>{html.escape(json.dumps(metrics, indent=2))}</pre>"
    text_block = f"<p>{html.escape(text)}</p>" if text else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;}}
figure{{margin:0 0 2rem 0}} figcaption{{color:#444}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>{text_block}
{_plotly_js_tag() if parts else ""}{"".join(parts)}{metrics_block}</body></html>
"""


def write_downloads(
    directory: Path,
    stem: str,
    figures: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    *,
    title: str,
    subtitle: str = "",
    text: str | None = None,
) -> tuple[Path, Path]:
    """`<stem>.html` (figures) and `<stem>.json` (metrics plus what produced them) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    html_path = directory / f"{stem}.html"
    json_path = directory / f"{stem}.json"
    html_path.write_text(
        report_html(figures, title=title, subtitle=subtitle, text=text, metrics=metrics), encoding="utf-8"
    )
    json_path.write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")
    return html_path, json_path
