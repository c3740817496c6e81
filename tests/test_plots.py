"""Shared figure builders: figures a class can compare (fixed 0–1 probability axis in one class order,
one colour scale or one labelled bar per map, readable ticks, labels that do not sit on each other)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from backend import plots


def traces(fig: dict, kind: str) -> list[dict]:
    return [t for t in fig["data"] if t["type"] == kind]


def test_probability_bars_share_one_fixed_axis_and_class_order() -> None:
    classes = ["circle", "ring", "star"]
    fig = plots.probability_bars(classes, {"a": [0.4, 0.1, 0.5], "b": [0.01, 0.98, 0.01]}, "t", notice="n")
    bars = traces(fig, "bar")
    assert [b["name"] for b in bars] == ["a", "b"]
    assert all(list(b["y"]) == classes for b in bars)
    assert fig["layout"]["xaxis"]["range"] == [0, 1]  # a 0.40 bar is 40 % as long as a 1.00 bar
    assert fig["layout"]["yaxis"]["categoryarray"] == classes
    assert fig["layout"]["meta"]["notice"] == "n"


def test_shared_scale_draws_a_weak_map_weak() -> None:
    rng = np.random.default_rng(0)
    trained = rng.random((8, 8)) * 0.32
    randomised = rng.random((8, 8)) * 2e-5
    panels = [("cnn: trained", None, trained), ("cnn: randomised", None, randomised)]
    fig = plots.overlay_grid(panels, "maps", scale="shared")
    maps = traces(fig, "heatmap")
    assert len(maps) == 2
    lo, hi = float(min(trained.min(), randomised.min())), float(max(trained.max(), randomised.max()))
    assert all(m["zmin"] == lo and m["zmax"] == hi for m in maps)
    assert [m["showscale"] for m in maps] == [True, False]  # one bar for the one scale
    # the randomised map's brightest cell sits at the bottom 0.01 % of the shared scale
    assert (randomised.max() - lo) / (hi - lo) < 1e-4
    assert "one colour scale" in fig["layout"]["title"]["text"]


def test_own_scale_gives_every_map_its_own_colour_bar() -> None:
    a, b = np.arange(16.0).reshape(4, 4), -np.arange(16.0).reshape(4, 4) * 1e-3
    fig = plots.overlay_grid([("x", None, a), ("y", None, b)], "maps", signed=True, scale="own")
    maps = traces(fig, "heatmap")
    assert all(m["showscale"] for m in maps)
    assert maps[0]["zmax"] == 15.0 and maps[1]["zmax"] == 0.015 and maps[1]["zmin"] == -0.015
    xs = [m["colorbar"]["x"] for m in maps]
    assert xs[0] < xs[1]  # each bar under its own panel, not stacked on one spot
    assert "own colour scale" in fig["layout"]["title"]["text"]
    marked = plots.overlay_grid_marked([("x", None, a, (1, 2)), ("y", None, b, None)], "m", scale="own")
    assert all(m["showscale"] for m in traces(marked, "heatmap"))


def test_log_axis_ticks_are_the_fractions() -> None:
    xs = [5.0, 10.0, 25.0, 50.0, 100.0]
    fig = plots.line_chart(
        xs, {"cnn": [0.7, 0.8, 0.9, 0.95, 1.0]}, "t", log_x=True, x_ticks=xs, x_tick_suffix=" %"
    )
    axis = fig["layout"]["xaxis"]
    assert axis["type"] == "log" and list(axis["tickvals"]) == xs
    assert list(axis["ticktext"]) == ["5 %", "10 %", "25 %", "50 %", "100 %"]


def test_marker_scatter_codes_series_by_colour_and_position_by_symbol() -> None:
    fig = plots.marker_scatter(
        {"layer 0": ([0, 1], [0, 1], [1, 2]), "layer 1": ([2, 3], [2, 3], [4, float("nan")])},
        "t",
        symbol_names=["head 0", "head 1"],
    )
    layer0, layer1, key0, key1 = traces(fig, "scatter")
    assert layer0["marker"]["color"] != layer1["marker"]["color"]
    assert list(layer0["marker"]["symbol"]) == list(layer1["marker"]["symbol"]) == ["circle", "square"]
    assert (key0["name"], key0["marker"]["symbol"]) == ("head 0", "circle")
    assert (key1["name"], key1["marker"]["symbol"]) == ("head 1", "square")
    sizes = list(layer1["marker"]["size"])
    assert sizes[0] == 8 + 22 and sizes[1] == 8  # the largest value gets the largest marker; NaN the smallest
    assert "text" not in layer0.get("mode", "")  # no labels on the points to collide


def test_small_images_stay_pixel_arrays_and_large_ones_travel_as_png() -> None:
    small = np.random.default_rng(0).random((32, 32, 3))
    big = np.zeros((200, 300, 3))
    fig = plots.image_pair([("photo", big), ("input", small)], "t")
    imgs = traces(fig, "image")
    assert imgs[0]["source"].startswith("data:image/png;base64,")
    assert decode(imgs[1]["z"]).shape == (32, 32, 3)


def decode(z: dict | list) -> np.ndarray:
    """Plotly's JSON encodes numpy arrays as base64 typed arrays."""
    import base64

    if isinstance(z, list):
        return np.asarray(z)
    shape = tuple(int(v) for v in str(z["shape"]).split(","))
    return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)


def test_to_json_merges_the_common_layout_as_plotly_would() -> None:
    """`to_json` edits the serialised dict; Plotly's own update_layout on the figure is the reference."""
    import json

    import plotly.graph_objects as go

    def figure() -> go.Figure:
        fig = go.Figure(go.Bar(x=np.arange(3), y=np.array([0.1, 0.5, 0.4])))
        fig.update_layout(title="A <b>bold</b>   title", title_pad_b=60, title_font_color="red")
        fig.update_layout(font={"size": 11, "color": "blue"}, meta={"old": 1})
        return fig

    ours = plots.to_json(figure(), notice="look")
    ref = figure()
    ref.update_layout(font=plots.FONT, meta={"alt": "A bold title", "notice": "look"})
    ref.update_layout(
        title={"font": {"size": 19}, "xref": "paper", "x": 0, "xanchor": "left", "yref": "paper",
               "y": 1, "yanchor": "bottom", "automargin": True, "pad": {"b": 60}}
    )  # fmt: skip
    expected = json.loads(ref.to_json())
    expected["layout"]["template"] = ours["layout"]["template"]
    assert ours == expected
    assert ours["layout"]["title"]["font"] == {"color": "red", "size": 19}
    assert ours["layout"]["title"]["pad"]["b"] == 60  # the builder's padding is kept; 24 otherwise
    assert plots.to_json(go.Figure(layout={"title": {"text": "t"}}))["layout"]["title"]["pad"]["b"] == 24
    assert plots.to_json(go.Figure())["layout"]["meta"] == {"alt": ""}


def _same_steps(fig: Any, subplots: bool) -> Any:
    """The calls the dict-built builders make, applied to either kind of figure."""
    rng = np.random.default_rng(1)
    fig.add_trace(
        plots._image_trace(rng.random((8, 8, 3))), row=1 if subplots else None, col=1 if subplots else None
    )
    fig.add_trace(
        {"type": "heatmap", "z": rng.random((4, 4)), "colorscale": plots.DIVERGING, "colorbar": {"len": 0.4}},
        row=2 if subplots else None,
        col=3 if subplots else None,
    )
    fig.add_trace({"type": "scatter", "x": [1.0], "y": [2.0], "mode": "markers", "showlegend": True})
    fig.update_layout(title="one<br><sup>two</sup>", height=400, margin={"r": 90}, title_pad_b=72)
    fig.update_layout(title_text="three", xaxis_title="layer", legend=plots.LEGEND_BELOW)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(autorange="reversed", scaleanchor="x", scaleratio=1)
    if subplots:
        fig.update_yaxes(row=2, col=2, title="accuracy", range=[0, 1])
        fig.update_annotations(font_size=15)
    fig.update_traces(showlegend=False, selector={"type": "scatter"})
    return fig


def test_dict_figures_serialise_as_the_plotly_figures_they_stand_for() -> None:
    """Independent check of backend.plotdict: Plotly's own make_subplots and update_* calls are the
    reference; the dict figure must serialise to exactly the same JSON."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from backend.plotdict import DictFigure

    titles = ["a: x<br>y", "", "c", "d", "e"]  # an empty title gets no annotation in either
    spacing = {"vertical_spacing": 0.2, "horizontal_spacing": 0.05}
    cases = [
        (go.Figure(), DictFigure(), False),
        (
            make_subplots(2, 3, subplot_titles=titles, **spacing),
            DictFigure.subplots(2, 3, titles, **spacing),
            True,
        ),
    ]
    for reference, ours, subplots in cases:
        want = plots.to_json(_same_steps(reference, subplots), notice="n")
        got = plots.to_json(_same_steps(ours, subplots).to_dict(), notice="n")
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    # A named colour scale travels as the list of stops Plotly expands it to.
    expanded = go.Heatmap(colorscale=plots.SEQUENTIAL).to_plotly_json()["colorscale"]
    assert plots._sequential_scale() == [list(stop) for stop in expanded]
