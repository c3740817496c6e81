"""Uploads against a real uvicorn server on loopback: stored downscaled, decoded off the event loop,
and cut off while a chunked body streams in."""

from __future__ import annotations

import io
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
from conftest import free_port, wait_until
from PIL import Image

from backend.config import Settings
from backend.main import create_app

CAP = 1024 * 1024  # 1 MB upload limit in these tests


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    settings = Settings(max_upload_bytes=CAP, max_image_side=512, rate_limit_per_minute=0, workers=1)
    port = free_port()
    app = create_app(settings, mount_ui=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, 60, what="uvicorn")
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(20)


def encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def upload(url: str, data: bytes, name: str = "x.png") -> httpx.Response:
    return httpx.post(f"{url}/api/images", files={"file": (name, data, "image/png")}, timeout=60)


def test_large_image_is_stored_downscaled(server: str) -> None:
    # A smooth 1500x1000 gradient: the stored copy must be 512x341 and match PIL's own resize.
    yy, xx = np.mgrid[0:1000, 0:1500]
    rgb = np.stack([xx * 255 // 1499, yy * 255 // 999, (xx + yy) * 255 // 2498], -1).astype(np.uint8)
    original = Image.fromarray(rgb)
    r = upload(server, encode(original, "PNG"))
    assert r.status_code == 201, r.text
    assert (r.json()["width"], r.json()["height"]) == (512, round(1000 * 512 / 1500))
    stored = Image.open(io.BytesIO(httpx.get(f"{server}/api/images/{r.json()['image_id']}").content))
    assert stored.size == (512, 341)
    reference = np.asarray(original.resize((512, 341), Image.Resampling.LANCZOS), dtype=np.float64)
    assert np.abs(np.asarray(stored, dtype=np.float64) - reference).mean() < 2.0


def test_small_image_is_stored_as_is(server: str) -> None:
    original = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    r = upload(server, encode(original, "PNG"))
    stored = Image.open(io.BytesIO(httpx.get(f"{server}/api/images/{r.json()['image_id']}").content))
    np.testing.assert_array_equal(np.asarray(stored), np.asarray(original))


def test_noise_jpeg_is_stored_small(server: str) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1600, 1600, 3), dtype=np.uint8))
    data = encode(noise, "JPEG", quality=20)
    assert len(data) < CAP
    r = upload(server, data, "n.jpg")
    assert r.status_code == 201, r.text
    stored = httpx.get(f"{server}/api/images/{r.json()['image_id']}").content
    # At most 512x512 RGB, whatever the source: a full-size PNG of this noise would be ~7 MB.
    assert Image.open(io.BytesIO(stored)).size == (512, 512)
    assert len(stored) <= 512 * 512 * 3 + 64 * 1024


def test_decoding_a_big_image_does_not_freeze_other_requests(server: str) -> None:
    # 36 megapixels of one colour: a tiny PNG that takes a second or more to decode.
    data = encode(Image.new("RGB", (6000, 6000), (10, 200, 30)), "PNG")
    result: dict[str, float] = {}

    def big_upload() -> None:
        t0 = time.perf_counter()
        assert upload(server, data).status_code == 201
        result["upload_s"] = time.perf_counter() - t0

    thread = threading.Thread(target=big_upload)
    latencies = []
    with httpx.Client(base_url=server, timeout=30) as c:
        thread.start()
        while thread.is_alive():
            t0 = time.perf_counter()
            assert c.get("/api/health").status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)
    thread.join()
    assert len(latencies) >= 3, result  # the health checks really ran while the image decoded
    assert max(latencies) < result["upload_s"] / 3, (max(latencies), result)


def test_chunked_upload_is_cut_off_while_streaming(server: str) -> None:
    """Stream 60 MB as a chunked multipart body; the server must answer 413 long before the end."""
    port = int(server.rsplit(":", 1)[1])
    boundary = "XyZbOuNdArY"
    head = (
        f"POST /api/images HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    preamble = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    total, sent, answer = 60 * 1024 * 1024, 0, b""
    piece = b"\x89PNG" + b"0" * (64 * 1024 - 4)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.sendall(b"%x\r\n%s\r\n" % (len(preamble), preamble))
        try:
            while sent < total:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Socket buffers may swallow a few MB before the answer is seen, not tens of them.
    assert sent < 16 * 1024 * 1024, sent
