"""Platform features in headless Chromium: a lab's text input and its partial results as they arrive
(through the test plugin, tests/toy_plugin.py), and the calibration lab's temperature slider, which
redraws the reliability diagram in the browser without a new job."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.test_browser import open_page, run_lab, select_tab
from tests.conftest import free_port, start_biaslab, wait_healthy

pytestmark = pytest.mark.browser

TESTS = Path(__file__).resolve().parent.parent

# Every text the lab's result line shows, in order, recorded in the page itself (polling from the test
# could miss a partial result that is on screen for only half a second).
RECORD_TEXT_JS = """
(sel) => {
  window.__seen = [];
  const note = () => {  // the result line may be created and re-created: look it up each time
    const node = document.querySelector(sel);
    const t = node ? node.innerText.trim() : "";
    if (t && window.__seen.at(-1) !== t) window.__seen.push(t);
  };
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true, characterData: true});
}
"""


@pytest.fixture(scope="module")
def plugin_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`biaslab serve` with the UI and the test plugin (a text lab that publishes partial results)."""
    tmp = tmp_path_factory.mktemp("plugin-ui")
    port = free_port()
    env = {
        "BIASLAB_PLUGINS": json.dumps(["toy_plugin"]),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    proc = start_biaslab(["serve", "--port", str(port), "--workers", "1"], tmp / "serve.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, tmp / "serve.log", timeout=240)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def test_text_input_and_partial_results_in_the_browser(
    browser_page: Any, plugin_ui: str, artifacts_dir: Path
) -> None:
    page = browser_page
    open_page(page, plugin_ui + "/")
    select_tab(page, "toy-echo", "Echo (test)")
    box = page.locator("#toy-echo-question textarea, #toy-echo-question input").first
    assert box.input_value() == "is there a red cube?"  # the lab's first suggested question
    box.fill("is there a cube")
    page.evaluate(RECORD_TEXT_JS, "#toy-echo-text")
    status = run_lab(page, "toy-echo", timeout=120_000)
    assert "Done" in status, status
    seen: list[str] = page.evaluate("() => window.__seen")
    # The page polls, so on a loaded machine it may skip a partial result that the next one replaced
    # within one poll; what it shows must still arrive in order, each with the words published so far.
    partials = [t for t in seen if t.startswith("Partial result")]
    steps = [int(t.split(":")[0].removeprefix("Partial result ")) for t in partials]
    assert steps and steps == sorted(set(steps)) and set(steps) <= {1, 2, 3}, seen
    words = ["is", "there", "a"]
    assert [t.split(":", 1)[1].strip() for t in partials] == [" ".join(words[:k]) for k in steps], seen
    assert page.locator("#toy-echo-text").inner_text().strip() == "is there a"  # the final result
    page.screenshot(path=str(artifacts_dir / "ui-toy-echo-partials.png"), full_page=True)


def test_a_result_with_fewer_figures_hides_the_charts_it_does_not_use(
    browser_page: Any, plugin_ui: str
) -> None:
    # The page updates only the chart slots that a result uses or that were showing before.
    page = browser_page
    open_page(page, plugin_ui + "/")
    select_tab(page, "toy-echo", "Echo (test)")
    box = page.locator("#toy-echo-question textarea, #toy-echo-question input").first
    shown = "() => [0, 1, 2, 3].map((i) => !!document.querySelector(`#toy-echo-fig-${i} .js-plotly-plot`))"
    titles = "() => [0, 1, 2].map((i) => document.querySelector(`#toy-echo-title-${i}`)?.innerText.trim())"
    for words, expected in (("one two three", 3), ("four", 1), ("five six", 2)):
        box.fill(words)
        assert "Done" in run_lab(page, "toy-echo", timeout=120_000)
        assert page.evaluate(shown) == [i < expected for i in range(4)], words
        want = [f"word {i + 1}: {w}" for i, w in enumerate(words.split())]
        assert [t or "" for t in page.evaluate(titles)] == want + [""] * (3 - expected), words


def test_calibration_temperature_slider_redraws_without_a_job(
    browser_page: Any, live_server: Any, artifacts_dir: Path
) -> None:
    page = browser_page
    open_page(page, live_server.url + "/")
    select_tab(page, "calibration", "Calibration")
    status = run_lab(page, "calibration")
    assert "Done" in status, status
    plot = "#calibration-fig-0 .js-plotly-plot"
    page.locator(plot).wait_for(timeout=30_000)
    bars = f"() => JSON.stringify(document.querySelector('{plot}').data[0].y)"
    before = page.evaluate(bars)
    jobs_before = page.evaluate("() => performance.getEntriesByType('resource').length")
    rail = page.locator(f"{plot} .slider-rail-touch-rect").first
    box = rail.bounding_box()
    assert box is not None
    rail.click(position={"x": box["width"] - 4, "y": box["height"] / 2})  # the hottest temperature
    page.wait_for_function(f"(b) => ({bars})() !== b", arg=before, timeout=10_000)
    after = page.evaluate(bars)
    assert after != before
    label = page.locator(f"{plot} .slider-container").text_content() or ""  # SVG: no innerText
    assert "4.00" in label, label
    # Redrawn in the page: no request went to the server for it.
    assert page.evaluate("() => performance.getEntriesByType('resource').length") == jobs_before
    page.screenshot(path=str(artifacts_dir / "ui-calibration-slider.png"), full_page=True)
