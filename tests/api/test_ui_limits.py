"""The mounted Gradio UI shares the API's limits: its own upload route refuses a file over
`max_upload_bytes`, and its pages carry the security headers (framable by Hugging Face only)."""

from __future__ import annotations

import httpx
from conftest import LiveServer

from backend.config import Settings


def test_gradio_upload_route_has_the_api_upload_cap(live_server: LiveServer) -> None:
    cap = Settings().max_upload_bytes  # live_server runs with the defaults
    for size, expected in ((64 * 1024, 200), (cap + 20_000, 413), (3 * cap, 413)):
        r = httpx.post(
            f"{live_server.url}/gradio_api/upload",
            files={"files": ("a.png", b"0" * size, "image/png")},
            timeout=60,
        )
        assert r.status_code == expected, (size, r.text[:200])


def test_ui_page_has_security_headers(live_server: LiveServer) -> None:
    r = httpx.get(f"{live_server.url}/", timeout=30)
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://huggingface.co https://*.hf.space" in csp
    assert "x-frame-options" not in r.headers
