"""Shared fixtures: real redis-server on a free loopback port, a live `biaslab serve`, Chromium.

Tests that need a system binary skip with a visible reason on a person's machine, and fail in CI
(BIASLAB_REQUIRE_SYSTEM_BINARIES=1, set by .ci/run) so a missing install step cannot hide.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
CHROMIUM = "/usr/bin/chromium"
REQUIRE_BINARIES = os.environ.get("BIASLAB_REQUIRE_SYSTEM_BINARIES") == "1"
# One cache per test session, shared with every process a test starts (they inherit the environment):
# the out-of-distribution reference is fitted once per session, never read from an earlier one.
os.environ["BIASLAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="biaslab-test-cache-")


def need_binary(path_or_name: str, why: str) -> str:
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) else None
    found = found or shutil.which(path_or_name)
    if found:
        return found
    message = f"{path_or_name} not found ({why}); install it, e.g. apt-get install {Path(path_or_name).name}"
    if REQUIRE_BINARIES:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary, self.port, self.workdir = binary, port, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(up, 10, what="redis-server to accept connections")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(need_binary("redis-server", "real Redis integration tests"), free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


class LiveServer:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def api(self, path: str) -> str:
        return f"{self.url}/api{path}"


def start_biaslab(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "backend.cli", *args],
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=full_env,
        )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout, interval=0.5, what=f"{url}/api/health")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One `biaslab serve` (embedded queue, real trained models) shared by the API and browser tests."""
    port = free_port()
    log = tmp_path_factory.mktemp("live") / "serve.log"
    proc = start_biaslab(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield LiveServer(url, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return need_binary(CHROMIUM, "browser tests")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def browser_page(chromium_path: str, artifacts_dir: Path):  # type: ignore[no-untyped-def]
    """A Playwright page in Debian's headless Chromium, 1280x800."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            yield page
        finally:
            browser.close()
