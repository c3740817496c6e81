"""Shared Plotly builders. Pure functions of arrays -> figure dicts (Plotly JSON).

Colour scales are colour-blind safe (cividis for magnitudes, a blue-orange diverging scale for signed
values). Every figure carries a title; the UI uses it (and `layout.meta.alt`) as alt text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SEQUENTIAL = "Cividis"
# Blue-white-orange: readable with the common colour-vision deficiencies.
DIVERGING = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b35806"]]
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FONT = {"family": "Inter, DejaVu Sans, Arial, sans-serif", "size": 15}


def to_json(fig: go.Figure, alt: str | None = None) -> dict[str, Any]:
    """Figure -> plain JSON dict (numpy arrays become lists)."""
    title = fig.layout.title.text or ""
    fig.update_layout(font=FONT, meta={"alt": alt or title}, template="plotly_white")
    out: dict[str, Any] = json.loads(fig.to_json())
    return out


def _image_trace(image: np.ndarray) -> go.Image:
    rgb = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return go.Image(z=rgb, hoverinfo="skip")


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
    fig = go.Figure()
    add_overlay(fig, image, heat, signed=signed, opacity=opacity, colorbar_title=colorbar_title)
    fig.update_layout(title=title, width=520, height=500)
    _square_axes(fig)
    return to_json(fig)


def add_overlay(
    fig: go.Figure,
    image: np.ndarray | None,
    heat: np.ndarray,
    *,
    signed: bool = False,
    opacity: float = 0.55,
    colorbar_title: str = "",
    row: int | None = None,
    col: int | None = None,
    showscale: bool = True,
) -> None:
    heat = np.asarray(heat, dtype=float)
    h, w = heat.shape
    if image is not None:
        ih, iw = image.shape[:2]
        fig.add_trace(_image_trace(image), row=row, col=col)
        dx, dy = iw / w, ih / h
        x0, y0 = dx / 2 - 0.5, dy / 2 - 0.5
    else:
        dx = dy = 1.0
        x0 = y0 = 0.0
    limit = float(np.abs(heat).max()) or 1.0
    fig.add_trace(
        go.Heatmap(
            z=heat,
            x0=x0,
            dx=dx,
            y0=y0,
            dy=dy,
            colorscale=DIVERGING if signed else SEQUENTIAL,
            zmin=-limit if signed else float(heat.min()),
            zmax=limit if signed else float(heat.max()),
            opacity=opacity if image is not None else 1.0,
            showscale=showscale,
            colorbar={"title": {"text": colorbar_title}},
            hovertemplate="row %{y:.0f}, col %{x:.0f}: %{z:.3g}<extra></extra>",
        ),
        row=row,
        col=col,
    )


def overlay_grid(
    panels: Sequence[tuple[str, np.ndarray | None, np.ndarray]],
    title: str,
    *,
    signed: bool = False,
    cols: int | None = None,
) -> dict[str, Any]:
    """Several (subtitle, image, map) panels side by side, e.g. one per model or per method."""
    n = len(panels)
    cols = cols or min(n, 4)
    rows = (n + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[0] for p in panels])
    for i, (_, image, heat) in enumerate(panels):
        add_overlay(fig, image, heat, signed=signed, row=i // cols + 1, col=i % cols + 1, showscale=i == 0)
    fig.update_layout(title=title, height=330 * rows + 80, width=max(520, 300 * cols))
    _square_axes(fig)
    return to_json(fig)


def _square_axes(fig: go.Figure) -> None:
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
    fig.update_layout(title=title, barmode="group", height=420, legend={"orientation": "h", "y": -0.2})
    axis = fig.update_xaxes if horizontal else fig.update_yaxes
    axis(title=yaxis_title, range=list(yrange) if yrange else None)
    if horizontal:
        fig.update_yaxes(autorange="reversed")
    return to_json(fig)


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
) -> dict[str, Any]:
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
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, height=420)
    if log_x:
        fig.update_xaxes(type="log")
    return to_json(fig)


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
            text=np.round(z, 2) if annotate else None,
            texttemplate="%{text}" if annotate else None,
            colorbar={"title": {"text": colorbar_title}},
        )
    )
    fig.update_layout(title=title, height=max(320, 60 * z.shape[0] + 120))
    fig.update_yaxes(autorange="reversed")
    return to_json(fig)
