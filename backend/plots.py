"""Shared Plotly builders. Pure functions of arrays -> figure dicts (Plotly JSON).

Colour scales are colour-blind safe (cividis for magnitudes, a blue-orange diverging scale for signed
values). Every figure carries a title; the UI uses it (and `layout.meta.alt`) as alt text.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from _plotly_utils.utils import convert_to_base64
from PIL import Image
from plotly.subplots import make_subplots

from backend.plotdict import DictFigure

# Every go.Figure() copies and validates the default template, and setting one does it again: two thirds
# of the time a job spent drawing its figures. So figures are built without one, and `to_json` adds the
# plotly_white template as ready-made JSON.
pio.templates.default = "none"

SEQUENTIAL = "Cividis"
# Blue-white-orange: readable with the common colour-vision deficiencies.
DIVERGING = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b35806"]]
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# 16 px base: the smallest text a projected chart can afford (axis ticks); titles are larger.
FONT = {"family": "Inter, DejaVu Sans, Arial, sans-serif", "size": 16, "color": "#111827"}
# Comparisons of maps: "shared" = one colour scale (and one bar) for every panel, so a weak map looks weak;
# "own" = each panel scaled to itself, with its own labelled colour bar under it.
Scale = Literal["shared", "own"]
# Legends sit at the very bottom of the figure (container coordinates), under the axis title, so they
# never cover tick labels or the axis title however tall the plot area is.
LEGEND_BELOW: dict[str, Any] = {
    "orientation": "h",
    "x": 0,
    "xanchor": "left",
    "yref": "container",
    "y": 0.01,
    "yanchor": "bottom",
}


def to_json(
    fig: go.Figure | dict[str, Any], alt: str | None = None, notice: str | None = None
) -> dict[str, Any]:
    """Figure (a go.Figure, or a figure dict built without Plotly's validation) -> plain JSON dict.

    `layout.meta.alt` is the alt text; `layout.meta.notice` is the one or two sentence "what to notice"
    the page shows under the figure. The common layout is merged into the serialised dict: the same
    two `update_layout` calls on the figure took two thirds of a small job's drawing time.
    """
    if isinstance(fig, dict):  # numpy arrays as Plotly's typed arrays, as a go.Figure would send them
        convert_to_base64(fig)  # in place
    out: dict[str, Any] = json.loads(pio.to_json(fig, validate=False, engine="orjson"))
    layout = out.setdefault("layout", {})
    title = layout.get("title") or {}
    text = title.get("text") or ""
    meta: dict[str, Any] = {"alt": alt or re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()}
    if notice:
        meta["notice"] = notice
    layout["meta"] = meta
    layout["font"] = {**layout.get("font", {}), **FONT}
    if text:
        # Sits on top of the plot area and pushes it down as its lines need (automargin): anchoring a
        # multi-line title to the figure's top clipped its first line (measured in Chromium). Builders
        # with panel titles above the plot ask for more padding than the default 24 px.
        pad = title.get("pad", {})
        layout["title"] = {
            **title,
            "font": {**title.get("font", {}), "size": 19},
            **{"xref": "paper", "x": 0, "xanchor": "left", "yref": "paper", "y": 1, "yanchor": "bottom"},
            "automargin": True,
            "pad": {**pad, "b": pad.get("b") or 24},
        }
    layout["template"] = _template_json()
    return out


@functools.cache
def _template_json_text() -> str:
    from plotly.utils import PlotlyJSONEncoder

    return json.dumps(pio.templates["plotly_white"].to_plotly_json(), cls=PlotlyJSONEncoder)


def _template_json() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(_template_json_text())  # a fresh copy per figure
    return out


INLINE_PIXELS = 64 * 64  # larger images travel as one PNG instead of a JSON array of pixel values


@functools.cache
def _sequential_scale_json() -> str:
    # Plotly sends a named scale as its list of stops; dict-built figures must send the same.
    return json.dumps(go.Heatmap(colorscale=SEQUENTIAL).to_plotly_json()["colorscale"])


def _sequential_scale() -> list[list[Any]]:
    out: list[list[Any]] = json.loads(_sequential_scale_json())
    return out


def _image_trace(image: np.ndarray) -> dict[str, Any]:
    rgb = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if rgb.shape[0] * rgb.shape[1] <= INLINE_PIXELS:
        return {"type": "image", "z": rgb, "hoverinfo": "skip"}  # Plotly draws z pixels unsmoothed
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return {
        "type": "image",
        "source": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
        "hoverinfo": "skip",
    }


def heatmap_overlay(
    image: np.ndarray | None,
    heat: np.ndarray,
    title: str,
    *,
    signed: bool = False,
    opacity: float = 0.55,
    colorbar_title: str = "",
) -> dict[str, Any]:
    """A (H, W) map drawn over an (H', W', 3) image; the map is stretched over the image extent."""
    fig = DictFigure()
    add_overlay(fig, image, heat, signed=signed, opacity=opacity, colorbar_title=colorbar_title)
    fig.update_layout(title=title, width=520, height=500, margin={"r": 90})
    _square_axes(fig)
    return to_json(fig.to_dict())


def add_overlay(
    fig: DictFigure,
    image: np.ndarray | None,
    heat: np.ndarray,
    *,
    signed: bool = False,
    opacity: float = 0.55,
    colorbar_title: str = "",
    row: int | None = None,
    col: int | None = None,
    showscale: bool = True,
    limits: tuple[float, float] | None = None,
    colorbar: dict[str, Any] | None = None,
) -> None:
    """One map over an image. `limits` fixes the colour scale (zmin, zmax); default: the map's own range."""
    heat = np.asarray(heat, dtype=float)
    if image is not None:
        fig.add_trace(_image_trace(image), row=row, col=col)
    zmin, zmax = limits if limits is not None else map_limits([heat], signed)
    bar = {
        "title": {"text": colorbar_title, "side": "right"},
        "thickness": 14,
        "exponentformat": "e",
        **(colorbar or {}),
    }
    trace = _map_trace(
        heat, image, signed=signed, zmin=zmin, zmax=zmax, opacity=opacity, showscale=showscale, colorbar=bar
    )
    fig.add_trace(trace, row=row, col=col)


def _map_trace(
    heat: np.ndarray,
    image: np.ndarray | None,
    *,
    signed: bool,
    zmin: float,
    zmax: float,
    opacity: float,
    showscale: bool,
    colorbar: dict[str, Any],
) -> dict[str, Any]:
    """A heatmap trace whose cells are stretched over the image's pixel extent (cell centres at
    (k + 0.5) * stride - 0.5), or on its own grid without an image (then fully opaque)."""
    h, w = heat.shape
    if image is not None:
        ih, iw = image.shape[:2]
        dx, dy = iw / w, ih / h
        x0, y0 = dx / 2 - 0.5, dy / 2 - 0.5
    else:
        dx = dy = 1.0
        x0 = y0 = 0.0
    return {
        "type": "heatmap",
        "z": heat,
        "x0": x0,
        "dx": dx,
        "y0": y0,
        "dy": dy,
        "colorscale": DIVERGING if signed else _sequential_scale(),
        "zmin": zmin,
        "zmax": zmax,
        "opacity": opacity if image is not None else 1.0,
        "showscale": showscale,
        "colorbar": colorbar,
        "hovertemplate": "row %{y:.0f}, col %{x:.0f}: %{z:.3g}<extra></extra>",
    }


def map_limits(maps: Sequence[np.ndarray], signed: bool = False) -> tuple[float, float]:
    """One colour range covering every map: (-m, m) with m = max |value| when signed, else (min, max)."""
    values = np.concatenate([np.asarray(m, dtype=float).ravel() for m in maps])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (-1.0, 1.0) if signed else (0.0, 1.0)
    if signed:
        m = float(np.abs(values).max()) or 1.0
        return -m, m
    lo, hi = float(values.min()), float(values.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _panel_titles(panels: Sequence[tuple[Any, ...]]) -> list[str]:
    # Two short lines ("model" / "what"): side-by-side panels are narrow on a page or projector.
    return [str(p[0]).replace(": ", ":<br>").replace(" → ", "<br>→ ") for p in panels]


def _grid_maps(
    fig: DictFigure,
    panels: Sequence[tuple[Any, ...]],
    cols: int,
    rows: int,
    *,
    signed: bool,
    scale: Scale,
    colorbar_title: str,
) -> None:
    """Draw each panel's (image, map) into the subplot grid with the chosen colour-scale policy."""
    shared = map_limits([p[2] for p in panels], signed) if scale == "shared" else None
    for i, panel in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        bar: dict[str, Any] | None = None
        if scale == "own":
            # A short horizontal bar under its own panel (vertical ones collide with the next panel).
            xd, yd = fig.domains(r, c)
            lo, hi = map_limits([panel[2]], signed)
            # Ticks at the two ends only: a narrow bar has no room for more labels without overlap.
            bar = {"orientation": "h", "x": (xd[0] + xd[1]) / 2, "xanchor": "center", "len": (xd[1] - xd[0]),
                   "y": yd[0] - 0.01, "yanchor": "top", "thickness": 10, "title": {"text": ""},
                   "tickmode": "array", "tickvals": [lo, hi], "ticktext": [f"{lo:.2g}", f"{hi:.2g}"],
                   "tickfont": {"size": 13}}  # fmt: skip
        add_overlay(
            fig, panel[1], panel[2], signed=signed, row=r, col=c,
            showscale=scale == "own" or i == 0, limits=shared, colorbar=bar, colorbar_title=colorbar_title,
        )  # fmt: skip


def _grid_layout(fig: DictFigure, title: str, rows: int, cols: int, scale: Scale) -> None:
    what = "one colour scale for all panels" if scale == "shared" else "each panel has its own colour scale"
    fig.update_layout(
        title=f"{title}<br><sup>{what}</sup>",
        height=(330 if scale == "shared" else 380) * rows + 90,
        width=max(520, 300 * cols),
        margin={"r": 90, "t": 110},
        title_pad_b=72,  # above the two-line panel titles
    )
    fig.update_annotations(font_size=15)  # the panel titles


def _grid(n: int, cols: int | None, scale: Scale) -> tuple[int, int, dict[str, float]]:
    cols = cols or min(n, 4)
    rows = (n + cols - 1) // cols
    # Room under each row for its colour bars when every panel has its own.
    spacing = {"vertical_spacing": (0.16 if scale == "own" else 0.1) / max(rows, 1) * 2 if rows > 1 else 0.0}
    return cols, rows, spacing


def overlay_grid(
    panels: Sequence[tuple[str, np.ndarray | None, np.ndarray]],
    title: str,
    *,
    signed: bool = False,
    cols: int | None = None,
    scale: Scale = "own",
    colorbar_title: str = "",
    notice: str | None = None,
) -> dict[str, Any]:
    """Several (subtitle, image, map) panels side by side, e.g. one per model or per method.

    `scale="shared"`: maps in one comparison (a trained model and its randomised copy) get one colour
    range and one colour bar, so a weak map is drawn weak. `scale="own"`: every map is stretched to its
    own range and carries its own colour bar; the figure's subtitle says which.
    """
    cols, rows, spacing = _grid(len(panels), cols, scale)
    fig = DictFigure.subplots(rows=rows, cols=cols, subplot_titles=_panel_titles(panels), **spacing)
    _grid_maps(fig, panels, cols, rows, signed=signed, scale=scale, colorbar_title=colorbar_title)
    _grid_layout(fig, title, rows, cols, scale)
    _square_axes(fig)
    return to_json(fig.to_dict(), notice=notice)


def _square_axes(fig: DictFigure) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)


def grouped_bars(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    title: str,
    *,
    yaxis_title: str = "",
    horizontal: bool = False,
    yrange: tuple[float, float] | None = None,
    notice: str | None = None,
) -> dict[str, Any]:
    """One bar group per category, one colour per series (e.g. per model)."""
    fig = go.Figure()
    for i, (label, values) in enumerate(series.items()):
        vals = [float(v) for v in values]
        kwargs: dict[str, Any] = (
            {"y": list(categories), "x": vals, "orientation": "h"}
            if horizontal
            else {"x": list(categories), "y": vals}
        )
        fig.add_trace(
            go.Bar(
                name=label,
                marker_color=PALETTE[i % len(PALETTE)],
                text=[f"{v:.2f}" for v in vals],
                textposition="auto",
                **kwargs,
            )
        )
    if horizontal:  # long category names read along the y axis, one bar row per series
        size = {"height": max(420, 30 * len(categories) * max(len(series), 2) + 330), "width": 640}
    else:  # phones scroll rather than squeeze the labels
        size = {"height": 460, "width": max(480, 200 * len(categories) + 160)}
    fig.update_layout(title=title, barmode="group", legend=LEGEND_BELOW, margin={"b": 190}, **size)
    axis = fig.update_xaxes if horizontal else fig.update_yaxes
    axis(title=yaxis_title, range=list(yrange) if yrange else None)
    if horizontal:
        fig.update_yaxes(autorange="reversed")
    return to_json(fig, notice=notice)


def probability_bars(
    classes: Sequence[str],
    per_model: Mapping[str, Sequence[float]],
    title: str,
    *,
    notice: str | None = None,
) -> dict[str, Any]:
    """Class probabilities of several models in ONE chart: one colour per model, the classes in the
    given order (top to bottom) for every model, and the axis fixed to 0–1 so bar lengths compare.
    Built as a dict: it is drawn for every predict job, and Plotly's validation cost more than the job."""
    data = []
    for i, (model, probs) in enumerate(per_model.items()):
        vals = [float(v) for v in probs]
        data.append(
            {
                "type": "bar",
                "name": model,
                "y": list(classes),
                "x": vals,
                "orientation": "h",
                "marker": {"color": PALETTE[i % len(PALETTE)]},
                "text": [f"{v:.0%}" if v >= 0.005 else "" for v in vals],  # no pile of "0%" labels
                "textposition": "outside",
                "cliponaxis": False,
                "hovertemplate": f"{model}: %{{y}} %{{x:.1%}}<extra></extra>",
            }
        )
    n = max(len(classes), 1) * max(len(per_model), 1)
    layout = {
        "title": {"text": title},
        "barmode": "group",
        "height": min(900, 170 + 26 * n),
        "bargap": 0.25,
        "legend": {**LEGEND_BELOW, "traceorder": "normal"},
        "margin": {"t": 60, "r": 64, "b": 140},
        "xaxis": {
            "title": {"text": "probability"}, "range": [0, 1], "tickvals": [0, 0.25, 0.5, 0.75, 1.0],
            "tickformat": ".0%", "showgrid": True, "zeroline": True,
        },
        "yaxis": {"autorange": "reversed", "categoryorder": "array", "categoryarray": list(classes)},
    }  # fmt: skip
    return to_json({"data": data, "layout": layout}, notice=notice)


def image_pair(
    panels: Sequence[tuple[str, np.ndarray]],
    title: str,
    *,
    notice: str | None = None,
) -> dict[str, Any]:
    """Images side by side at their own pixel grids (e.g. the upload and the exact 32×32 model input);
    Plotly draws image traces without smoothing, so every model pixel is a visible square."""
    fig = DictFigure.subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    for i, (_, image) in enumerate(panels):
        fig.add_trace(_image_trace(image), row=1, col=i + 1)
    fig.update_layout(
        title=title,
        height=360,
        margin={"t": 90, "b": 10},
        title_pad_b=60,  # no width: fits a phone
    )
    fig.update_annotations(font_size=14)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    return to_json(fig.to_dict(), notice=notice)


def layer_scatter(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    *,
    xaxis_title: str = "layer",
    yaxis_title: str = "",
    lines: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> dict[str, Any]:
    """Points per (x, y), one colour per series (e.g. mean attention distance per head vs layer),
    plus optional reference lines (e.g. per-layer means or a CNN's receptive field)."""
    fig = go.Figure()
    for i, (label, (xs, ys)) in enumerate(series.items()):
        fig.add_trace(
            go.Scatter(
                x=list(xs),
                y=list(ys),
                mode="markers",
                name=label,
                marker={"color": PALETTE[i % len(PALETTE)], "size": 9, "opacity": 0.8},
            )
        )
    for i, (label, (xs, ys)) in enumerate((lines or {}).items()):
        fig.add_trace(
            go.Scatter(
                x=list(xs),
                y=list(ys),
                mode="lines",
                name=label,
                line={"color": PALETTE[i % len(PALETTE)], "width": 2},
            )
        )
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, height=440)
    return to_json(fig)


def line_chart(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    title: str,
    *,
    xaxis_title: str = "",
    yaxis_title: str = "",
    error: dict[str, Sequence[float]] | None = None,
    log_x: bool = False,
    x_ticks: Sequence[float] | None = None,
    x_tick_suffix: str = "",
    yrange: tuple[float, float] | None = None,
    references: Mapping[str, float] | None = None,
    notice: str | None = None,
) -> dict[str, Any]:
    """Lines with markers; `x_ticks` puts ticks exactly at those values (labelled "5 %", ...), which a
    log axis otherwise labels with Plotly's "2 3 4 5" minor digits. `references` are dashed horizontal
    lines (e.g. chance)."""
    fig = go.Figure()
    for i, (label, ys) in enumerate(series.items()):
        err = (error or {}).get(label)
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=list(ys),
                mode="lines+markers",
                name=label,
                line={"color": PALETTE[i % len(PALETTE)]},
                error_y={"type": "data", "array": list(err)} if err is not None else None,
            )
        )
    for label, y in (references or {}).items():
        fig.add_hline(
            y=y, line={"dash": "dash", "color": "#4b5563", "width": 2},
            annotation={"text": label, "font": {"size": 14}}, annotation_position="bottom right",
        )  # fmt: skip
    fig.update_layout(
        title=title,
        xaxis_title=xaxis_title,
        yaxis_title=yaxis_title,
        height=480,
        legend=LEGEND_BELOW,
        margin={"b": 190},
    )
    if x_ticks is not None:
        fig.update_layout(width=max(520, 80 * len(list(x_ticks)) + 200))  # labelled ticks need room
    if log_x:
        fig.update_xaxes(type="log")
    if x_ticks is not None:
        fig.update_xaxes(tickvals=list(x_ticks), ticktext=[f"{v:g}{x_tick_suffix}" for v in x_ticks])
    if yrange is not None:
        fig.update_yaxes(range=list(yrange))
    return to_json(fig, notice=notice)


def _cell_text(z: np.ndarray) -> list[list[str]]:
    """Values written in heatmap cells, to 2 decimals; a cell without data stays blank, not "NaN"."""
    return [["" if not np.isfinite(v) else f"{round(float(v), 2):g}" for v in row] for row in z]


def matrix_heatmap(
    z: np.ndarray,
    title: str,
    *,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    zmin: float | None = None,
    zmax: float | None = None,
    annotate: bool = True,
    colorbar_title: str = "",
) -> dict[str, Any]:
    """A labelled matrix (e.g. σ(λ) per layer × head) with the values written in the cells."""
    z = np.asarray(z, dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(x_labels) if x_labels is not None else None,
            y=list(y_labels) if y_labels is not None else None,
            colorscale=SEQUENTIAL,
            zmin=zmin,
            zmax=zmax,
            text=_cell_text(z) if annotate else None,
            texttemplate="%{text}" if annotate else None,
            colorbar={"title": {"text": colorbar_title, "side": "right"}},
        )
    )
    fig.update_layout(
        title=title, height=max(320, 60 * z.shape[0] + 120), width=max(420, 90 * z.shape[1] + 200)
    )
    fig.update_yaxes(autorange="reversed")
    return to_json(fig)


# --- Attention, gating and attribution labs -------------------------------------------------------


def overlay_grid_marked(
    panels: Sequence[tuple[str, np.ndarray | None, np.ndarray, tuple[int, int] | None]],
    title: str,
    *,
    signed: bool = False,
    cols: int | None = None,
    marker_label: str = "query patch",
    scale: Scale = "own",
    colorbar_title: str = "",
    notice: str | None = None,
) -> dict[str, Any]:
    """Like `overlay_grid`, with an optional (row, col) cell of each map outlined (e.g. the query patch)."""
    cols, rows, spacing = _grid(len(panels), cols, scale)
    fig = DictFigure.subplots(rows=rows, cols=cols, subplot_titles=_panel_titles(panels), **spacing)
    _grid_maps(fig, panels, cols, rows, signed=signed, scale=scale, colorbar_title=colorbar_title)
    shown = False
    for i, (_, image, heat, mark) in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        if mark is None:
            continue
        # Same cell geometry as `add_overlay`: cell centres at (k + 0.5) * stride - 0.5 over an image.
        h, w = np.asarray(heat).shape
        if image is not None:
            ih, iw = image.shape[:2]
            x, y = (mark[1] + 0.5) * iw / w - 0.5, (mark[0] + 0.5) * ih / h - 0.5
        else:
            x, y = float(mark[1]), float(mark[0])
        fig.add_trace(
            {
                "type": "scatter",
                "x": [x],
                "y": [y],
                "mode": "markers",
                "name": marker_label,
                "showlegend": not shown,
                "marker": {"symbol": "square-open", "size": 16, "color": "#D55E00", "line": {"width": 3}},
                "hovertemplate": f"{marker_label}: row {mark[0]}, col {mark[1]}<extra></extra>",
            },
            row=r,
            col=c,
        )
        shown = True
    _grid_layout(fig, title, rows, cols, scale)
    if shown:  # a legend above the grid collided with the panel titles; say it in the subtitle instead
        fig.update_traces(showlegend=False, selector={"type": "scatter"})
        text = fig.layout["title"]["text"].replace("<sup>", f"<sup>orange square: the {marker_label} · ", 1)
        fig.update_layout(title_text=text)
    _square_axes(fig)
    return to_json(fig.to_dict(), notice=notice)


def head_layer_scatter(
    per_model: Mapping[str, Mapping[str, np.ndarray]],
    title: str,
    *,
    yaxis_title: str = "",
    references: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """One value per head (points) against layer, one colour per model; each model may carry several
    (L, H) arrays (e.g. "probe set" as filled circles, "this image" as open diamonds), the first one's
    per-layer mean drawn as a line. `references` are horizontal dashed lines over all layers."""
    symbols = ["circle", "diamond-open", "square-open", "x"]
    fig = DictFigure()
    max_layers = 1
    for i, (model, kinds) in enumerate(per_model.items()):
        colour = PALETTE[i % len(PALETTE)]
        for j, (kind, values) in enumerate(kinds.items()):
            v = np.asarray(values, dtype=float)
            if v.size == 0:
                continue
            L, H = v.shape
            max_layers = max(max_layers, L)
            jitter = (np.arange(H) - (H - 1) / 2) * (0.25 / max(H, 1)) + (0.08 * j)
            xs = (np.arange(L)[:, None] + jitter[None, :]).ravel()
            heads = np.tile(np.arange(H), L)
            fig.add_trace(
                {
                    "type": "scatter",
                    "x": xs.tolist(),
                    "y": v.ravel().tolist(),
                    "mode": "markers",
                    "name": f"{model}: {kind}",
                    "customdata": np.stack([np.repeat(np.arange(L), H), heads], -1).tolist(),
                    "hovertemplate": "layer %{customdata[0]}, head %{customdata[1]}: %{y:.3g}<extra></extra>",
                    "marker": {
                        "color": colour,
                        "size": 9,
                        "symbol": symbols[j % len(symbols)],
                        "opacity": 0.85,
                    },
                }
            )
            if j == 0:
                fig.add_trace(
                    {
                        "type": "scatter",
                        "x": list(range(L)),
                        "y": v.mean(1).tolist(),
                        "mode": "lines",
                        "name": f"{model}: mean over heads ({kind})",
                        "line": {"color": colour, "width": 2},
                    }
                )
    for k, (label, ys) in enumerate((references or {}).items()):
        vals = list(ys)
        xs_ref = list(range(len(vals))) if len(vals) > 1 else [-0.3, max_layers - 0.7]
        vals = vals if len(vals) > 1 else vals * 2
        fig.add_trace(
            {
                "type": "scatter",
                "x": xs_ref,
                "y": vals,
                "mode": "lines",
                "name": label,
                "line": {"color": PALETTE[(len(per_model) + k) % len(PALETTE)], "dash": "dash", "width": 2},
            }
        )
    fig.update_layout(
        title=title,
        xaxis_title="layer",
        yaxis_title=yaxis_title,
        height=480,
        legend=LEGEND_BELOW,
        margin={"b": 230},  # room for a legend of several rows under the axis title
    )
    fig.update_xaxes(dtick=1)
    return to_json(fig.to_dict())


SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "hexagon")


def marker_scatter(
    points: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    title: str,
    *,
    symbol_names: Sequence[str],
    xaxis_title: str = "",
    yaxis_title: str = "",
    size_title: str = "",
    square: bool = False,
) -> dict[str, Any]:
    """Points coded twice: colour = series, marker symbol = position in the series (named by
    `symbol_names`), marker size = a value. E.g. each GPSA head's positional centre, colour = layer,
    symbol = head, size = locality strength. Text labels on the points collided whenever heads
    clustered; here the legend names colours and symbols and the hover gives the exact values."""
    fig = go.Figure()
    all_sizes = [abs(float(s)) for (_, _, sizes) in points.values() for s in sizes if np.isfinite(s)]
    top = max(all_sizes) if all_sizes else 1.0
    symbols = [SYMBOLS[k % len(SYMBOLS)] for k in range(len(symbol_names))]
    for i, (series, (xs, ys, sizes)) in enumerate(points.items()):
        n = len(list(xs))
        fig.add_trace(
            go.Scatter(
                x=[float(v) for v in xs],
                y=[float(v) for v in ys],
                mode="markers",
                name=series,
                legendgroup="series",
                text=[f"{series}, {symbol_names[k]}" for k in range(n)],
                customdata=[float(s) for s in sizes],
                hovertemplate="%{text}: (%{x:.2f}, %{y:.2f}), "
                + (size_title or "size")
                + " %{customdata:.3g}<extra></extra>",
                marker={
                    "color": PALETTE[i % len(PALETTE)],
                    "symbol": symbols[:n],
                    "size": [8 + 22 * abs(float(s)) / (top or 1.0) if np.isfinite(s) else 8 for s in sizes],
                    "opacity": 0.75,
                    "line": {"width": 1, "color": "#111827"},
                },
            )
        )
    for name, symbol in zip(symbol_names, symbols, strict=True):  # legend keys for the symbols
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", name=name, legendgroup="symbols",
                marker={"color": "#6b7280", "symbol": symbol, "size": 12}, hoverinfo="skip",
            )
        )  # fmt: skip
    fig.update_layout(
        title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, height=520, width=560,
        legend=LEGEND_BELOW, margin={"b": 160}, title_pad_b=44,
    )  # fmt: skip
    if square:
        fig.update_yaxes(scaleanchor="x", scaleratio=1, autorange="reversed")
    return to_json(fig)


def styled_lines(
    x: Sequence[float],
    series: Mapping[str, tuple[Sequence[float], int, int]],
    title: str,
    *,
    xaxis_title: str = "",
    yaxis_title: str = "",
) -> dict[str, Any]:
    """Many curves where colour and dash carry two indices: series label -> (ys, colour index, dash index),
    e.g. a gate per (layer = colour, head = dash) over training."""
    dashes = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
    fig = go.Figure()
    for label, (ys, colour, dash) in series.items():
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=[float(v) for v in ys],
                mode="lines",
                name=label,
                line={
                    "color": PALETTE[colour % len(PALETTE)],
                    "dash": dashes[dash % len(dashes)],
                    "width": 2,
                },
            )
        )
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, height=440)
    return to_json(fig)


def reliability_diagrams(
    panels: Mapping[str, Mapping[str, Any]],
    temperatures: Sequence[float],
    start: int,
    title: str,
    *,
    fitted: Mapping[str, float] | None = None,
    notice: str | None = None,
) -> dict[str, Any]:
    """Reliability diagrams side by side (one column per model), with a temperature slider.

    panels[name] holds, per temperature index t, the bin arrays "accuracy"[t], "confidence"[t] and
    "count"[t] (one value per bin, NaN for empty bins) and "centres" (bin centres). The slider restyles
    every panel in the browser, so moving it needs no new job. Row 1: per-bin accuracy against the
    diagonal, with the gap (confidence − accuracy) stacked in orange; row 2: how many images each bin holds.
    """
    names = list(panels)
    n = len(names)
    fig = make_subplots(
        rows=2,
        cols=n,
        row_heights=[0.72, 0.28],
        shared_xaxes=True,
        vertical_spacing=0.06,
        horizontal_spacing=0.04,
        subplot_titles=[_wrap(nm) for nm in names] + [""] * n,
    )
    dynamic: list[int] = []  # indices of the traces the slider restyles, 3 per panel
    for col, name in enumerate(names, start=1):
        p = panels[name]
        centres = [float(c) for c in p["centres"]]
        width = 1.0 / max(len(centres), 1) * 0.9
        acc, gap, count = _reliability_values(p, start)
        first = col == 1
        dynamic += [len(fig.data), len(fig.data) + 1, len(fig.data) + 2]
        fig.add_trace(
            go.Bar(x=centres, y=acc, width=width, name="accuracy", marker_color=PALETTE[0], showlegend=first),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Bar(
                x=centres,
                y=gap,
                base=acc,
                width=width,
                name="gap to confidence",
                marker_color=PALETTE[1],
                opacity=0.75,
                showlegend=first,
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Bar(x=centres, y=count, width=width, name="images", marker_color="#666666", showlegend=first),
            row=2,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                line={"color": "#333333", "dash": "dash"},
                name="perfect calibration",
                showlegend=first,
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(range=[0, 1], row=1, col=col, title="accuracy" if first else None)
        fig.update_yaxes(row=2, col=col, title="images" if first else None)
        fig.update_xaxes(range=[0, 1], row=2, col=col, title="confidence")
    steps = []
    for t, temp in enumerate(temperatures):
        ys, bases = [], []
        for name in names:
            acc, gap, count = _reliability_values(panels[name], t)
            ys += [acc, gap, count]
            bases += [None, acc, None]
        label = f"{temp:.2f}"
        steps.append({"method": "restyle", "label": label, "args": [{"y": ys, "base": bases}, dynamic]})
    height, top, bottom, slider_pad = 640, 110, 230, 85
    plot_h = height - top - bottom
    note = ""
    if fitted:
        note = " · fitted T: " + ", ".join(f"{k} {v:.2f}" for k, v in fitted.items())
    fig.update_layout(
        title={"text": _wrap(title + note, 90)},
        barmode="overlay",
        height=height,
        width=max(620, 260 * n),  # the page keeps this as a minimum: a phone scrolls sideways
        margin={"t": top, "b": bottom},
        # Below the x-axis titles (~60 px) comes the slider (~75 px), then the legend; paper
        # coordinates are fractions of the plot area, so the pixel offsets are converted here.
        legend={"orientation": "h", "yanchor": "top", "y": -(slider_pad + 90) / plot_h},
        sliders=[
            {
                "active": start,
                "currentvalue": {"prefix": "temperature T = "},
                "pad": {"t": slider_pad},
                "steps": steps,
            }
        ],
    )
    return to_json(fig, notice=notice)


def _reliability_values(panel: Mapping[str, Any], t: int) -> tuple[list, list, list]:
    def clean(values: Any) -> list:
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]

    acc = np.asarray(panel["accuracy"][t], dtype=float)
    conf = np.asarray(panel["confidence"][t], dtype=float)
    return clean(acc), clean(conf - acc), clean(panel["count"][t])


def _wrap(text: str, width: int = 40) -> str:
    """Break a long title onto lines (Plotly does not wrap) so it never runs into its neighbour."""
    import textwrap

    lines = [w for line in text.split("<br>") for w in (textwrap.wrap(line, width) or [line])]
    return "<br>".join(lines) or text


def xy_lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    *,
    xaxis_title: str = "",
    yaxis_title: str = "",
    diagonal: bool = False,
    notice: str | None = None,
) -> dict[str, Any]:
    """Curves with their own x values each (label -> (xs, ys)); `diagonal` adds the y = x reference."""
    fig = go.Figure()
    for i, (label, (xs, ys)) in enumerate(series.items()):
        fig.add_trace(
            go.Scatter(
                x=[float(v) for v in xs],
                y=[float(v) for v in ys],
                mode="lines+markers",
                name=label,
                line={"color": PALETTE[i % len(PALETTE)]},
            )
        )
    if diagonal:
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dash"})
        )
    fig.update_layout(
        title={"text": _wrap(title, 90)},
        xaxis_title=xaxis_title,
        yaxis_title=yaxis_title,
        height=460,
        legend={"orientation": "h", "y": -0.25},
        margin={"t": 90},
    )
    return to_json(fig, notice=notice)


def xy_panels(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    title: str,
    *,
    xaxis_title: str = "",
    yaxis_title: str = "",
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
    notice: str | None = None,
) -> dict[str, Any]:
    """Small multiples: one panel per model (panel title -> {series label -> (xs, ys)}), the same series in
    the same colour in every panel and one legend for all. Twelve curves in one chart need a legend
    taller than the chart; three per panel can be read."""
    names = list(panels)
    cols = min(len(names), 2)
    n_rows = -(-len(names) // cols)
    fig = make_subplots(
        rows=n_rows,
        cols=cols,
        subplot_titles=[_wrap(nm, 34) for nm in names],
        shared_yaxes=True,
        horizontal_spacing=0.06,
        vertical_spacing=0.4 / n_rows,
    )
    labels = list(dict.fromkeys(label for series in panels.values() for label in series))
    for k, name in enumerate(names):
        row, col = k // cols + 1, k % cols + 1
        for label, (xs, ys) in panels[name].items():
            fig.add_trace(
                go.Scatter(
                    x=[float(v) for v in xs],
                    y=[float(v) for v in ys],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=k == 0,
                    line={"color": PALETTE[labels.index(label) % len(PALETTE)]},
                ),
                row=row,
                col=col,
            )
        if diagonal:
            fig.add_trace(
                go.Scatter(
                    x=[0, 1],
                    y=[0, 1],
                    mode="lines",
                    name="perfect calibration",
                    legendgroup="diagonal",
                    showlegend=k == 0,
                    line={"color": "#333333", "dash": "dash"},
                ),
                row=row,
                col=col,
            )
        fig.update_xaxes(title_text=xaxis_title if row == n_rows else None, row=row, col=col)
        fig.update_yaxes(title_text=yaxis_title if col == 1 else None, range=y_range, row=row, col=col)
    fig.update_layout(
        title={"text": title},
        height=300 * n_rows + 200,
        width=max(560, 400 * cols),
        legend={"orientation": "h", "yanchor": "top", "y": -0.1 - 0.1 / n_rows},
        margin={"t": 90, "b": 130},
    )
    return to_json(fig, notice=notice)


# --- Sanity checks, baselines and references (appended for the ConViT labs, issue 14) ---------------


def _top_title(fig: go.Figure | DictFigure, title: str, top: int = 200) -> None:
    """A tall top margin: the UI wraps long titles onto several lines, which must not run into the panel
    titles below them."""
    fig.update_layout(title=title, margin={"t": top})


def _square_each(fig: go.Figure | DictFigure, n: int) -> None:
    """Image-like axes, each subplot square on its own (anchoring all to the first x distorts the rest)."""
    for k in range(1, n + 1):
        sx = "" if k == 1 else str(k)
        fig.update_layout(
            {
                f"xaxis{sx}": {"showticklabels": False, "showgrid": False, "zeroline": False},
                f"yaxis{sx}": {
                    "showticklabels": False,
                    "showgrid": False,
                    "zeroline": False,
                    "autorange": "reversed",
                    "scaleanchor": f"x{sx}",
                    "scaleratio": 1,
                },
            }
        )


def overlay_rows(
    rows: Sequence[tuple[str, np.ndarray | None, Sequence[tuple[str, np.ndarray]]]],
    title: str,
    *,
    signed: bool = False,
    colorbar_title: str = "",
    opacity: float = 0.6,
) -> dict[str, Any]:
    """One row per model: (row label, image, [(panel title, map), ...]). The maps of a row share one
    colour scale (range set by the row's largest value), with one labelled colour bar beside the row, so
    a weak map (e.g. from random weights) looks as weak as it is next to its trained twin."""
    n_rows = len(rows)
    cols = max(len(r[2]) for r in rows)
    titles = []
    for label, _, panels in rows:
        titles += [f"{label}<br>{t}" for t, _ in panels] + [""] * (cols - len(panels))
    fig = DictFigure.subplots(
        rows=n_rows, cols=cols, subplot_titles=titles, vertical_spacing=0.12 / max(n_rows, 1) + 0.04
    )
    for i, (label, image, panels) in enumerate(rows):
        heats = [np.asarray(h, dtype=float) for _, h in panels]
        top = max((float(np.nanmax(np.abs(h))) for h in heats if h.size), default=0.0) or 1.0
        zmin, zmax = (-top, top) if signed else (0.0, top)
        y_mid = 1 - (i + 0.5) / n_rows
        bar = {
            "title": {"text": f"{label}<br>{colorbar_title}", "side": "right"},
            "y": y_mid,
            "len": 0.85 / n_rows,
            "x": 1.02,
            "thickness": 12,
        }
        for j, heat in enumerate(heats):
            if image is not None:
                fig.add_trace(_image_trace(image), row=i + 1, col=j + 1)
            trace = _map_trace(
                heat,
                image,
                signed=signed,
                zmin=zmin,
                zmax=zmax,
                opacity=opacity,
                showscale=j == 0,
                colorbar=bar,
            )
            fig.add_trace(trace, row=i + 1, col=j + 1)
    fig.update_layout(height=300 * n_rows + 180, width=max(560, 270 * cols + 200), margin={"r": 160})
    _top_title(fig, title)
    _square_each(fig, n_rows * cols)
    return to_json(fig.to_dict())


def spread_chart(
    groups: Mapping[str, Mapping[str, Sequence[float | None]]],
    title: str,
    *,
    yaxis_title: str = "",
    yrange: tuple[float, float] | None = None,
    reference: tuple[float, str] | None = None,
) -> dict[str, Any]:
    """Box plus every point, per category (e.g. model) and series (e.g. method): groups[series][category]
    = values. None/NaN values are left out (missing, not zero); the category label says how many."""
    # One label per category for every series, saying how many values each series could not define.
    cats: list[str] = []
    for per_cat in groups.values():
        cats += [c for c in per_cat if c not in cats]
    labels = {}
    for cat in cats:
        notes = []
        for series, per_cat in groups.items():
            got = list(per_cat.get(cat, []))
            missing = sum(1 for v in got if v is None or not np.isfinite(v))
            if missing:
                notes.append(f"{series}: {missing} of {len(got)} undefined")
        labels[cat] = cat + ("<br>" + _wrap("(" + "; ".join(notes) + ")", 16) if notes else "")
    fig = go.Figure()
    for i, (series, per_cat) in enumerate(groups.items()):
        xs: list[str] = []
        ys: list[float] = []
        for cat, values in per_cat.items():
            vals = [float(v) for v in values if v is not None and np.isfinite(v)]
            xs += [labels[cat]] * len(vals)
            ys += vals
        fig.add_trace(
            go.Box(
                x=xs,
                y=ys,
                name=series,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": PALETTE[i % len(PALETTE)], "size": 5, "opacity": 0.6},
                line={"color": PALETTE[i % len(PALETTE)]},
                boxmean=True,
            )
        )
    fig.update_xaxes(categoryorder="array", categoryarray=[labels[c] for c in cats])
    if reference is not None:
        fig.add_hline(y=reference[0], line_dash="dash", line_color="#555", annotation_text=reference[1])
    fig.update_layout(
        title=title,
        boxmode="group",
        height=480,
        width=max(480, 150 * len(cats) + 160),  # a phone scrolls rather than slant the model names
        yaxis_title=yaxis_title,
        # Above the panel: below it, it ran into category labels that carry a second and third line.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1.0},
    )
    if yrange is not None:
        fig.update_yaxes(range=list(yrange))
    return to_json(fig)


def cascade_curves(
    per_model: Mapping[
        str, tuple[Sequence[str], Mapping[str, tuple[Sequence[float | None], Sequence[float | None]]]]
    ],
    title: str,
    *,
    yaxis_title: str = "",
    yrange: tuple[float, float] = (-1.0, 1.0),
) -> dict[str, Any]:
    """One panel per model: x = units randomised so far (from the output down), one line per method with
    ±std error bars; missing values (None) break the line instead of reading as 0."""
    names = list(per_model)
    cols = min(len(names), 2)
    n_rows = (len(names) + cols - 1) // cols
    fig = make_subplots(
        rows=n_rows,
        cols=cols,
        subplot_titles=names,
        shared_yaxes=True,
        vertical_spacing=0.45 / max(n_rows, 1),
    )
    methods: list[str] = []
    for i, name in enumerate(names):
        labels, series = per_model[name]
        for method, (mean, std) in series.items():
            if method not in methods:
                methods.append(method)
            k = methods.index(method)
            fig.add_trace(
                go.Scatter(
                    x=list(range(len(labels))),
                    y=[None if v is None or not np.isfinite(v) else float(v) for v in mean],
                    error_y={
                        "type": "data",
                        "array": [0.0 if s is None or not np.isfinite(s) else float(s) for s in std],
                    },
                    mode="lines+markers",
                    name=method,
                    legendgroup=method,
                    showlegend=i == 0,
                    line={"color": PALETTE[k % len(PALETTE)]},
                    customdata=list(labels),
                    hovertemplate="%{customdata}: %{y:.2f}<extra>" + method + "</extra>",
                ),
                row=i // cols + 1,
                col=i % cols + 1,
            )
        fig.update_xaxes(
            tickvals=list(range(len(labels))),
            ticktext=[str(t) for t in labels],
            tickangle=-90,  # upright labels are as narrow as a line: slanted ones ran into their neighbours
            tickfont={"size": 11},
            row=i // cols + 1,
            col=i % cols + 1,
        )
    fig.update_yaxes(range=list(yrange), title=yaxis_title, col=1)
    fig.add_hline(y=0, line_dash="dot", line_color="#888")
    # Legend on the right, outside the panels: above them it would sit on the panel titles.
    fig.update_layout(height=480 * n_rows + 160, width=max(560, 400 * cols), margin={"b": 160})
    _top_title(fig, title)
    return to_json(fig)


def matrix_heatmaps(
    panels: Sequence[tuple[str, np.ndarray, Sequence[str], Sequence[str]]],
    title: str,
    *,
    zmin: float,
    zmax: float,
    colorbar_title: str = "",
    cols: int | None = None,
    x_title: str = "",
    y_title: str = "",
) -> dict[str, Any]:
    """Several labelled matrices (subtitle, z, x labels, y labels) side by side on ONE colour scale with one
    colour bar, values written in the cells, e.g. σ(λ) per layer × head for models trained on two tasks.
    Short tick labels with the axis named once (`x_title`, `y_title`) keep narrow panels legible."""
    n = len(panels)
    cols = cols or min(n, 3)
    n_rows = (n + cols - 1) // cols
    fig = make_subplots(
        rows=n_rows,
        cols=cols,
        subplot_titles=[_wrap(p[0], 24) for p in panels],
        horizontal_spacing=0.08,
        vertical_spacing=0.25 / max(n_rows, 1),
    )
    for i, (_, z, xl, yl) in enumerate(panels):
        z = np.asarray(z, dtype=float)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=list(xl),
                y=list(yl),
                colorscale=SEQUENTIAL,
                zmin=zmin,
                zmax=zmax,
                text=_cell_text(z),
                texttemplate="%{text}",
                showscale=i == 0,
                colorbar={"title": {"text": colorbar_title}},
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text=x_title)
    for r in range(1, n_rows + 1):
        fig.update_yaxes(title_text=y_title, row=r, col=1)
    per_row = max(300, 60 * max(np.asarray(p[1]).shape[0] for p in panels) + 140)
    fig.update_layout(height=per_row * n_rows + 120, width=max(560, 330 * cols + 120))
    _top_title(fig, title)
    return to_json(fig)


def add_notices(figures: list[dict[str, Any]], rules: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Give each figure without a "what to notice" the first rule whose key appears in its title."""
    for fig in figures:
        meta = fig.setdefault("layout", {}).setdefault("meta", {})
        if meta.get("notice"):
            continue
        title = str((fig["layout"].get("title") or {}).get("text", ""))
        note = next((text for key, text in rules if key in title), None)
        if note:
            meta["notice"] = note
    return figures


# --- Image grids (appended for the diffusion labs, issue 12) -----------------------------------------


def image_grid(
    panels: Sequence[tuple[str, np.ndarray]],
    title: str,
    *,
    cols: int = 4,
    notice: str | None = None,
) -> dict[str, Any]:
    """Small images (e.g. 16×16 samples) in rows of `cols`, each with its subtitle, drawn unsmoothed."""
    n = len(panels)
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[_wrap(p[0], 18) for p in panels],
        vertical_spacing=0.12 / max(rows, 1) * 2 if rows > 1 else 0.0,
        horizontal_spacing=0.04,
    )
    for i, (_, image) in enumerate(panels):
        fig.add_trace(_image_trace(image), row=i // cols + 1, col=i % cols + 1)
    # The width is the page's minimum (app.figures): a phone scrolls the grid instead of squeezing it.
    fig.update_layout(
        title=title, height=250 * rows + 110, width=max(480, 160 * cols), margin={"t": 110, "b": 10},
        title_pad_b=50,
    )  # fmt: skip
    fig.update_annotations(font_size=13)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    return to_json(fig, notice=notice)


# --- Shape-bias lab (issue 11) ----------------------------------------------------------------------


def image_table(
    rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, np.ndarray | None]]]],
    title: str,
    *,
    colorbar_title: str = "",
    opacity: float = 0.55,
    notice: str | None = None,
) -> dict[str, Any]:
    """Rows of image cells: (row label, [(cell title, image (H, W, 3) in [0, 1], map or None), ...]).

    Unlike `overlay_rows`, every cell has its own image (e.g. an image, its patch-shuffled and silhouette
    versions, each with a model's GradCAM); maps of one row share a colour scale from 0 to the row's
    largest value, so a weak map looks weak beside a strong one."""
    n_rows = len(rows)
    cols = max(len(cells) for _, cells in rows)
    titles: list[str] = []
    for label, cells in rows:
        titles += [f"{label}<br>{t}" for t, _, _ in cells] + [""] * (cols - len(cells))
    fig = DictFigure.subplots(
        rows=n_rows, cols=cols, subplot_titles=titles, vertical_spacing=0.12 / max(n_rows, 1) + 0.04
    )
    for i, (label, cells) in enumerate(rows):
        maps = [np.asarray(m, dtype=float) for _, _, m in cells if m is not None]
        top = max((float(np.nanmax(m)) for m in maps if m.size), default=0.0) or 1.0
        shown = False
        for j, (_, image, heat) in enumerate(cells):
            fig.add_trace(_image_trace(image), row=i + 1, col=j + 1)
            if heat is None:
                continue
            bar = {
                "title": {"text": f"{label}<br>{colorbar_title}", "side": "right"},
                "y": 1 - (i + 0.5) / n_rows,
                "len": 0.85 / n_rows,
                "x": 1.02,
                "thickness": 12,
            }
            trace = _map_trace(
                np.asarray(heat, dtype=float), image, signed=False, zmin=0.0, zmax=top, opacity=opacity,
                showscale=not shown, colorbar=bar,
            )  # fmt: skip
            fig.add_trace(trace, row=i + 1, col=j + 1)
            shown = True
    fig.update_layout(height=320 * n_rows + 200, width=max(560, 300 * cols + 200), margin={"r": 160})
    fig.update_annotations(font_size=13)
    _top_title(fig, title)
    _square_each(fig, n_rows * cols)
    return to_json(fig.to_dict(), notice=notice)
