"""The dashboard in headless Chromium against a live `biaslab serve` (embedded queue, real models).

One screenshot (1280x800) per lab goes to artifacts/ui-<lab>.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

pytestmark = pytest.mark.browser

LAB_TIMEOUT_MS = 240_000  # the slowest lab on two CPU cores, with margin
EXAMPLE = "example-shapes-star"


@pytest.fixture(scope="module")
def catalog(live_server: Any) -> dict[str, Any]:
    labs = httpx.get(live_server.api("/labs"), timeout=30).json()
    examples = httpx.get(live_server.api("/examples"), timeout=30).json()
    return {"labs": labs, "examples": examples}


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#lab-tabs [role=tab]", timeout=60_000)
    page.wait_for_selector("#example-gallery button", timeout=60_000)


def wait_done(page: Any, lab: str, timeout: int = LAB_TIMEOUT_MS) -> str:
    status = page.locator(f"#{lab}-status")
    page.wait_for_selector(
        f"#{lab}-status [data-status=finished], #{lab}-status [data-status=error]", timeout=timeout
    )
    return str(status.inner_text())


def test_every_lab_runs_on_an_example(
    browser_page: Any, live_server: Any, catalog: Any, artifacts_dir: Path
) -> None:
    page = browser_page
    open_page(page, live_server.url + "/")
    title = next(e["title"] for e in catalog["examples"] if e["image_id"] == EXAMPLE)
    page.locator(f"#example-gallery button.thumbnail-item:has(img[alt='{title}'])").click()
    page.wait_for_function(
        "() => new URLSearchParams(location.search).get('image') === 'example-shapes-star'"
    )
    failures = []
    for lab in catalog["labs"]:
        name = lab["name"]
        page.click(f"#tab-{name}-button")
        page.click(f"#{name}-run")
        text = wait_done(page, name)
        if "Done" not in text:
            failures.append(f"{name}: {text}")
            page.screenshot(path=str(artifacts_dir / f"ui-{name}-failed.png"))
            continue
        plot = page.locator(f"#{name}-fig-0 .js-plotly-plot")
        plot.wait_for(timeout=30_000)
        assert plot.get_attribute("role") == "img" and plot.get_attribute("aria-label")
        page.locator(f"#{name}-fig-0").scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts_dir / f"ui-{name}.png"))
        assert page.locator(f"#{name}-dl-html").is_visible()
        assert "Traceback" not in page.content()
    assert not failures, failures


def test_shared_link_reopens_the_same_state(browser_page: Any, live_server: Any, catalog: Any) -> None:
    page = browser_page
    link = f"{live_server.url}/?lab=predict&models=cnn-shapes,deit-shapes&image={EXAMPLE}&top_k=3"
    open_page(page, link)
    page.wait_for_selector("#tab-predict-button[aria-selected=true]")
    page.wait_for_function(
        "() => document.querySelector('#predict-top_k input[type=number]')?.value === '3'", timeout=30_000
    )

    def checked() -> list[str]:
        boxes = page.locator("#predict-models label")
        return [
            boxes.nth(i).inner_text().strip()
            for i in range(boxes.count())
            if boxes.nth(i).locator("input").is_checked()
        ]

    assert checked() == ["cnn-shapes", "deit-shapes"]
    page.wait_for_selector("#current-image img")
    assert "star" in page.locator("#image-note").inner_text().lower()

    # Change a control: the address bar follows, and that new link reopens the new state.
    page.fill("#predict-top_k input[type=number]", "4")
    page.keyboard.press("Enter")
    page.wait_for_function("() => new URLSearchParams(location.search).get('top_k') === '4'", timeout=30_000)
    query = parse_qs(urlparse(page.url).query)
    assert query["lab"] == ["predict"] and query["models"] == ["cnn-shapes,deit-shapes"]
    assert query["image"] == [EXAMPLE]
    open_page(page, page.url)
    page.wait_for_function(
        "() => document.querySelector('#predict-top_k input[type=number]')?.value === '4'", timeout=30_000
    )
    assert checked() == ["cnn-shapes", "deit-shapes"]
    page.click("#predict-run")
    assert "Done" in wait_done(page, "predict")
    # top-4 bars in each model's chart
    page.wait_for_selector("#predict-fig-0 .js-plotly-plot g.point", timeout=30_000)
    assert page.locator("#predict-fig-0 .js-plotly-plot g.point").count() == 4
    # The downloads: metrics as JSON (with what produced them), figures as one standalone HTML file.
    with page.expect_download() as download:
        page.click("#predict-dl-json")
    saved = json.loads(Path(download.value.path()).read_text())
    assert saved["params"]["top_k"] == 4 and set(saved["metrics"]) == {"cnn-shapes", "deit-shapes"}
    with page.expect_download() as download:
        page.click("#predict-dl-html")
    assert Path(download.value.path()).read_text().count("<figure") == 2


def test_non_image_upload_shows_the_api_message(browser_page: Any, live_server: Any) -> None:
    page = browser_page
    open_page(page, live_server.url + "/")
    with page.expect_file_chooser() as chooser:
        page.click("#upload-image")
    chooser.value.set_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"just some text"}]
    )
    error = page.locator("#image-note .bl-note-error")
    error.wait_for(timeout=30_000)
    assert "not an image" in error.inner_text()
    assert "Traceback" not in page.content()
