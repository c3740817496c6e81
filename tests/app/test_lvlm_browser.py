"""The lvlm-debias lab in headless Chromium: a typed question on a generated scene, the post-hoc bars,
the token-by-token table and the balanced-split chart, photographed at a laptop and a phone width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.app.test_browser import OVERLAPS_JS, open_page, run_lab

pytestmark = pytest.mark.browser

LAB = "lvlm-debias"


def test_lvlm_debias_in_the_browser(browser_page: Any, live_server: Any, artifacts_dir: Path) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 800})
    open_page(page, f"{live_server.url}/?lab={LAB}&scene=generated&scene_seed=5&eval_scenes=60")
    page.wait_for_selector(f"#tab-{LAB}-button[aria-selected=true]", timeout=30_000)
    page.fill(f"#{LAB}-question textarea, #{LAB}-question input", "is there a yellow cone?")
    status = run_lab(page, LAB)
    assert "Done" in status, status
    page.locator(f"#{LAB}-fig-5 .js-plotly-plot").wait_for(timeout=30_000)
    # Post-hoc: p, p_cf and q over yes/no, on one fixed 0–1 axis.
    bars = page.locator(f"#{LAB}-fig-1 .js-plotly-plot g.trace.bars")
    assert bars.count() == 3 and bars.nth(0).locator("g.point").count() == 2
    axis = page.evaluate(f"() => document.querySelector('#{LAB}-fig-1 .js-plotly-plot').layout.xaxis.range")
    assert axis == [0, 1]
    # The decoding table names both answers' tokens; the text states both answers and the metrics.
    assert "plain (p)" in page.locator(f"#{LAB}-fig-2").inner_text()
    text = page.locator(f"#{LAB}-text").inner_text()
    assert (
        "debiased" in text
        and "Balanced split" in text
        and "yellow cone" in page.locator(f"#{LAB}-title-1").inner_text()  # the title above the chart
    )
    assert "Traceback" not in page.content()
    problems = []
    for width, height in ((1280, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(700)
        page.screenshot(path=str(artifacts_dir / f"ui-{LAB}-question-{width}.png"), full_page=True)
        problems += page.evaluate(OVERLAPS_JS, f"#tab-{LAB}")
    assert not problems, problems
