from __future__ import annotations

import json
from pathlib import Path

from app.figures import (
    OKABE_ITO,
    alt_text,
    figure_title,
    metrics_markdown,
    report_html,
    to_figure,
    write_downloads,
)

BAR = {
    "data": [{"type": "bar", "x": [0.9, 0.1], "y": ["star", "cross"], "orientation": "h", "bogus": 1}],
    "layout": {"title": {"text": "cnn-shapes: <b>top-2</b>"}},
}


def test_alt_text_prefers_meta_then_title() -> None:
    assert alt_text({"layout": {"meta": {"alt": "A bar chart"}, "title": {"text": "T"}}}) == "A bar chart"
    assert alt_text(BAR) == "cnn-shapes: top-2"
    assert alt_text({"data": []}, 2) == "Figure 3"


def test_to_figure_is_tolerant_and_readable() -> None:
    fig = to_figure(BAR)  # the unknown "bogus" property is skipped, not fatal
    assert list(fig.layout.colorway) == OKABE_ITO
    assert fig.layout.font.size >= 15
    assert fig.layout.meta["alt"] == "cnn-shapes: top-2"
    wide = to_figure({**BAR, "layout": {**BAR.get("layout", {}), "width": 1500}})
    assert wide.layout.width is None and wide.layout.autosize  # fits the page's results column


def test_title_moves_out_of_the_chart_and_frees_its_margin() -> None:
    long_title = "convit-shapes: gate σ(λ) per GPSA layer<br>and head (1 = positional, 0 = content)"
    figure = {**BAR, "layout": {"title": {"text": long_title}, "margin": {"t": 200}}}
    assert figure_title(figure) == long_title.replace("<br>", " ")
    fig = to_figure(figure)
    assert not fig.layout.title.text and fig.layout.margin.t < 100
    # Panel titles of two lines on the top row keep room for both lines above the plot area.
    panels = {
        **figure,
        "layout": {
            **figure["layout"],
            "annotations": [{"text": "a<br>b", "yref": "paper", "yanchor": "bottom", "y": 1.0}],
        },
    }
    assert to_figure(panels).layout.margin.t >= 2 * 15
    page = report_html([figure], title="Gating")
    assert page.index("gate σ(λ) per GPSA layer and head") < page.index("Plotly.newPlot")


def test_metrics_markdown_per_model_and_flat() -> None:
    table = metrics_markdown({"cnn": {"top1": "star", "confidence": 0.98765}, "vit": {"top1": "cross"}})
    assert table.splitlines()[0] == "| metric | cnn | vit |"
    assert "| confidence | 0.9877 |  |" in table
    flat = metrics_markdown({"accuracy": 0.5, "curve": [1, 2, 3]})
    assert "| accuracy | 0.5 |" in flat and "| curve | [1, 2, 3] |" in flat
    assert metrics_markdown({}) == ""


def test_downloads_are_standalone(tmp_path: Path) -> None:
    html_path, json_path = write_downloads(tmp_path, "predict-1", [BAR, BAR], {"m": 1}, title="Predict")
    page = html_path.read_text()
    assert page.count("<figure") == 2 and 'aria-label="cnn-shapes: top-2"' in page
    assert '<script src="http' not in page and len(page) > 1_000_000  # plotly.js inlined: works offline
    assert page.count("* plotly.js v") == 1  # once, before the first figure's script
    assert page.index("* plotly.js v") < page.index("Plotly.newPlot")
    assert json.loads(json_path.read_text()) == {"m": 1}


def test_ood_notice_only_for_out_of_distribution_results() -> None:
    from app.figures import ood_html

    ood = {"in_distribution": False, "score": 0.6, "threshold": 0.2, "sentence": "Odd: <cat>."}
    shown = ood_html({"ood": ood})
    assert 'data-ood="true"' in shown and "&lt;cat&gt;" in shown and "3.0×" in shown
    assert ood_html({"ood": {**ood, "in_distribution": True}}) == ""
    assert ood_html({}) == ""
    # the notice is not repeated as a column of the metrics table
    assert "ood" not in metrics_markdown({"cnn": {"top1": "ring"}, "ood": ood})


def _without_empty(value: object) -> object:
    """Plotly drops empty objects when it serialises a go.Figure; the page's JSON may keep them."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v != {}}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def test_the_page_draws_what_the_download_draws() -> None:
    """The page's payload skips go.Figure; Plotly's own validation of the same dict is the reference."""
    import numpy as np
    import plotly.graph_objects as go

    from app.figures import plot_data, styled
    from backend import plots

    figures = [
        plots.probability_bars(["star", "ring"], {"cnn": [0.9, 0.1], "vit": [0.3, 0.7]}, "Predictions"),
        plots.overlay_grid([("a", None, np.eye(4)), ("b", None, np.ones((4, 4)))], "two maps", scale="own"),
    ]
    for figure in figures:
        before = json.dumps(figure)
        page = json.loads(plot_data(figure).plot)
        assert json.dumps(figure) == before  # the job's figure is not changed
        go.Figure(styled(figure), skip_invalid=False)  # every property is one Plotly knows
        assert _without_empty(page) == _without_empty(json.loads(to_figure(figure).to_json()))
        assert "text" not in page["layout"]["title"] and page["layout"]["autosize"] is True
        width = figure["layout"].get("width")  # kept as the width below which the page scrolls
        assert page["layout"]["meta"].get("min_width") == width and "width" not in page["layout"]
