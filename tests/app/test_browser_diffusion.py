"""The diffusion sampler in headless Chromium: its trajectory arrives step by step as partial results,
then the samples beside their nearest training images (issue 12). The locality and basis labs run in
tests/app/test_browser.py with every other lab, photographed at three viewports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.app.test_browser import open_page, run_lab, select_tab
from tests.app.test_browser_platform import RECORD_TEXT_JS

pytestmark = pytest.mark.browser


def test_sampler_trajectory_arrives_step_by_step(
    browser_page: Any, live_server: Any, artifacts_dir: Path
) -> None:
    page = browser_page
    open_page(page, live_server.url + "/")
    select_tab(page, "diffusion-sampling", "Diffusion sampling")
    page.evaluate(RECORD_TEXT_JS, "#diffusion-sampling-text")
    status = run_lab(page, "diffusion-sampling", timeout=240_000)
    assert "Done" in status, status
    seen: list[str] = page.evaluate("() => window.__seen")
    partials = [t for t in seen if t.startswith("Partial result")]
    assert len(partials) >= 2, seen  # several steps were drawn before the end
    final = page.locator("#diffusion-sampling-text").inner_text()
    assert "nearest training image" in final and "empirical optimal" in final
    page.locator("#diffusion-sampling-fig-0 .js-plotly-plot").wait_for(timeout=30_000)
    assert "nearest training" in page.locator("#diffusion-sampling-fig-0").inner_text()
    page.screenshot(path=str(artifacts_dir / "ui-diffusion-sampling-final.png"), full_page=True)
