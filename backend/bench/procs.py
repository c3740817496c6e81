"""Real processes for the service sections: redis-server, `biaslab serve` and `biaslab worker` on free
loopback ports (as tests/conftest.py starts them), each stopped by its own handle at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, from /proc; None where /proc has no such field."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Processes:
    """The processes one bench run started; `close` stops them in reverse order."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir, self.env = workdir, env or {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}  # pid -> its log's stem ("worker0", "serve-redis", ...)
        workdir.mkdir(parents=True, exist_ok=True)

    def spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with (self.workdir / log).open("wb") as fh:
            proc = subprocess.Popen(args, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        self.names[proc.pid] = Path(log).stem
        return proc

    def biaslab(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        return self.spawn([sys.executable, "-m", "backend.cli", *args], log)

    def redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; install it (apt-get install redis-server)")
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.spawn(args, "redis.log")
        import redis

        client = redis.Redis(port=port)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(up, 20, "redis-server")
        return f"redis://127.0.0.1:{port}/0"

    def serve(self, extra: list[str], log: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        proc = self.biaslab(["serve", "--host", "127.0.0.1", "--port", str(port), *extra], log)
        return f"http://127.0.0.1:{port}", proc

    def wait_healthy(self, url: str, proc: subprocess.Popen[bytes], log: str, workers: int = 0) -> None:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{log}: exited early:\n{(self.workdir / log).read_text()[-2000:]}")
            try:
                r = httpx.get(f"{url}/api/health", timeout=2)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and int(r.json().get("workers", 0)) >= workers

        wait_until(ready, 600, f"{url}/api/health with {workers} workers", interval=0.05)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)
