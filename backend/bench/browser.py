"""Section 3, in the browser: from a click on Run to the new figure drawn on the page.

Headless Chromium (Playwright) on the embedded server's page, predict at its defaults on the first
example image: the time from the click until the probability chart holds the new job's data, against
the same job (lab, models, image) over HTTP, the two interleaved. What the browser adds on top is
Gradio's round trips and Plotly drawing the figure.
"""

from __future__ import annotations

import shutil
import statistics
import time
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
PLOT = "#predict-fig-1 .js-plotly-plot"  # the probability bars; fig-0 is the image and the model input
SHOWN = "(g && g._fullData ? JSON.stringify(g._fullData.map((t) => t.x)) : null)"  # the bars drawn


def _chromium() -> str | None:
    return next((p for p in CHROMIUM if shutil.which(p)), None)


def run_to_figure(base: str, samples: int) -> dict[str, Any]:
    """Click-to-drawn seconds for `samples` runs (after one warm-up), or why it was not measured."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (the dev extra)"}
    path = _chromium()
    if path is None:
        return {"skipped": "no Chromium at " + " or ".join(CHROMIUM)}
    from backend.bench.service import Client

    api = Client(base)
    labs = api.http.get(f"{base}/api/labs").raise_for_status().json()
    lab = next(info for info in labs if info["name"] == "predict")
    times: list[float] = []
    http_s: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(base)
            page.wait_for_selector("#predict-run", timeout=120_000)
            examples = page.locator("#example-gallery button.thumbnail-item")
            examples.first.wait_for(timeout=120_000)
            image = ""
            for i in range(samples + 1):
                # Alternate two examples: the page does not redraw a chart whose figure did not change.
                examples.nth(i % 2).click()
                page.wait_for_function(
                    "(old) => (new URLSearchParams(location.search).get('image') || '') !== old",
                    arg=image,
                    timeout=60_000,
                )
                image = page.evaluate("() => new URLSearchParams(location.search).get('image')")
                page.evaluate(
                    f"() => {{ const g = document.querySelector('{PLOT}'); window.__old = {SHOWN}; }}"
                )
                start = time.perf_counter()
                page.click("#predict-run")
                page.wait_for_function(
                    f"() => {{ const g = document.querySelector('{PLOT}');"
                    f" return g && {SHOWN} !== window.__old; }}",
                    timeout=120_000,
                    polling=20,
                )
                if i:  # the first run loads the models and warms the page's caches
                    times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    api.run("predict", lab["default_models"], image, {})
                    http_s.append(time.perf_counter() - start)
        finally:
            browser.close()
    return {
        "lab": "predict at its defaults",
        "samples": len(times),
        "run_to_figure_p50_s": statistics.median(times),
        "run_to_figure_max_s": max(times),
        "http_p50_s": statistics.median(http_s),
        "models": lab["default_models"],
    }
