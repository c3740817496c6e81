"""Redis faults with a real redis-server and real processes, loopback only:

- while Redis is down (stopped, or frozen with SIGSTOP) the API answers 503 within about a second,
  names no internal address, and recovers by itself;
- a Redis outage longer than every worker's heartbeat TTL, while jobs run, re-queues nothing: each
  job finishes exactly once, and queued jobs survive the restart (AOF persistence, as deployed);
- an API restart in the middle of a job loses nothing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from conftest import REPO, RedisServer, free_port, need_binary, start_biaslab, wait_healthy, wait_until
from fastapi.testclient import TestClient
from rq.job import Job

from backend.config import Settings
from backend.main import create_app

MODEL = "cnn-shapes"
TTL_S = 4  # heartbeat TTL of the workers; the outage below lasts three of them
FAST = {
    "BIASLAB_HEARTBEAT_TTL_S": str(TTL_S),
    "BIASLAB_SWEEP_INTERVAL_S": "0.5",
    "BIASLAB_RATE_LIMIT_PER_MINUTE": "0",
}


class PersistentRedis(RedisServer):
    """redis-server with the append-only file a deployment needs (jobs survive a restart)."""

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:  # refused, or "loading the dataset in memory"
                return False

        wait_until(up, 10, what="redis-server to accept connections")


def job_body(tta: int) -> dict:
    params = {"tta_samples": tta}
    return {"lab": "predict", "models": [MODEL], "image_id": "example-shapes-circle", "params": params}


# -- the API while Redis is away (in-process app, no workers) -------------------------------------


def test_api_answers_503_within_a_second_and_recovers(redis_server: RedisServer) -> None:
    settings = Settings(redis_url=redis_server.url, workers=0, rate_limit_per_minute=0)
    calls = [
        ("GET", "/api/health", {}),
        ("POST", "/api/jobs", {"json": job_body(0)}),
        ("GET", "/api/jobs/some-job", {}),
        ("DELETE", "/api/jobs/some-job", {}),
        ("GET", "/api/images/0123abcd", {}),
    ]
    with TestClient(create_app(settings, mount_ui=False)) as c:
        assert c.get("/api/health").status_code == 200
        assert redis_server.proc is not None
        for outage in ("stopped", "frozen"):
            if outage == "stopped":
                redis_server.stop()
            else:
                os.kill(redis_server.proc.pid, signal.SIGSTOP)  # accepts connections, never answers
            for method, path, kw in calls:
                t0 = time.monotonic()
                r = c.request(method, path, **kw)
                elapsed = time.monotonic() - t0
                assert r.status_code == 503, (outage, path, r.text)
                assert elapsed < 1.0, (outage, path, elapsed)
                assert str(redis_server.port) not in r.text and "127.0.0.1" not in r.text
                assert r.headers["retry-after"]
            assert c.get("/api/labs").status_code == 200  # what needs no Redis keeps working
            if outage == "stopped":
                redis_server.start()  # same port, fresh server
            else:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            wait_until(lambda: c.get("/api/health").status_code == 200, 10, what="API to recover")
            assert c.post("/api/jobs", json=job_body(0)).status_code == 202


# -- real processes: serve + two workers + a persistent redis-server --------------------------------


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis = PersistentRedis(need_binary("redis-server", "Redis fault tests"), free_port(), tmp)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.serve: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.serve_starts = 0

    def start_serve(self) -> None:
        """The API alone in its own process (the Gradio UI plays no part here and takes a minute to
        build on a busy machine), with the settings `biaslab serve --redis URL --workers 0` uses."""
        self.serve_starts += 1
        log = self.tmp / f"serve{self.serve_starts}.log"
        code = (
            "import uvicorn; from backend.main import create_app; "
            "uvicorn.run(create_app(mount_ui=False), host='127.0.0.1', "
            f"port={self.port}, log_level='warning')"
        )
        env = {**os.environ, **FAST, "BIASLAB_REDIS_URL": self.redis.url, "BIASLAB_WORKERS": "0"}
        with log.open("wb") as fh:
            self.serve = subprocess.Popen(
                [sys.executable, "-c", code], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env
            )
        wait_healthy(self.url, self.serve, log, timeout=300)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("*.log")))

    def stop(self) -> None:
        procs = [p for p in [self.serve, *self.workers] if p is not None]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.redis.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(tmp_path_factory.mktemp("faults"))
    try:
        st.redis.start()
        for name in ("worker-a", "worker-b"):
            log = st.tmp / f"{name}.log"
            st.workers.append(start_biaslab(["worker", "--redis", st.redis.url], log, FAST))
        st.start_serve()
        with httpx.Client(base_url=st.url, timeout=30) as c:
            wait_until(lambda: c.get("/api/health").json()["workers"] >= 2, 120, 0.5, what="two workers")
        yield st
    finally:
        st.stop()


class Watcher:
    """Polls job states in the background (tolerating 503s) and records every state each job showed."""

    def __init__(self, url: str, ids: list[str]) -> None:
        self.url, self.ids = url, ids
        self.seen: dict[str, list[str]] = {i: [] for i in ids}
        self.answers: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as c:
            while not self._stop.is_set():
                for i in self.ids:
                    try:
                        r = c.get(f"/api/jobs/{i}")
                    except httpx.HTTPError:
                        self.answers[-1] = self.answers.get(-1, 0) + 1  # the API itself restarting
                        continue
                    self.answers[r.status_code] = self.answers.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        states = self.seen[i]
                        status = r.json()["status"]
                        if not states or states[-1] != status:
                            states.append(status)
                time.sleep(0.1)

    def done(self) -> bool:
        return all(s and s[-1] in ("finished", "failed", "cancelled") for s in self.seen.values())


def submit(c: httpx.Client, tta: int) -> str:
    r = c.post("/api/jobs", json=job_body(tta))
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def wait_running(c: httpx.Client, ids: list[str]) -> None:
    def running() -> bool:
        views = [c.get(f"/api/jobs/{i}").json() for i in ids]
        return all(v["status"] == "started" and v["progress"] > 0.05 for v in views)

    wait_until(running, 90, 0.2, what="jobs to run")


def successful_runs(conn: redis.Redis, job_id: str) -> int:
    return len([r for r in Job.fetch(job_id, connection=conn).results() if r.type.name == "SUCCESSFUL"])


def test_redis_outage_longer_than_the_heartbeat_runs_every_job_exactly_once(stack: Stack) -> None:
    conn = redis.Redis.from_url(stack.redis.url)
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        # One per worker. A job pauses at its next progress update while Redis is away, so these
        # are still running when it returns.
        running = [submit(c, 4000), submit(c, 4000)]
        wait_running(c, running)
        queued = [submit(c, 500), submit(c, 500)]
        ids = running + queued
        with Watcher(stack.url, ids) as watcher:
            stack.redis.stop()  # SIGTERM: the AOF is flushed, as on a planned restart
            time.sleep(3 * TTL_S)  # every liveness key expires meanwhile (TTLs are wall-clock)
            stack.redis.start()
            back_at = time.time()
            try:
                wait_until(watcher.done, 180, 0.5, what="all jobs to end")
            except TimeoutError:
                pytest.fail(f"jobs did not end: {watcher.seen}\n{stack.logs()[-4000:]}")
    for i in ids:
        assert watcher.seen[i][-1] == "finished", (i, watcher.seen[i])
        assert successful_runs(conn, i) == 1, i
    for i in running:
        # The outage really hit these jobs mid-run, and they never went back to "queued".
        ended = Job.fetch(i, connection=conn).ended_at
        assert ended is not None and ended.timestamp() > back_at, i
        assert "queued" not in watcher.seen[i][watcher.seen[i].index("started") :], watcher.seen[i]
    assert not re.search(r"re-queued job", stack.logs()), "a live worker's job was re-queued"
    assert not any(code >= 500 and code != 503 for code in watcher.answers), watcher.answers


def test_api_restart_mid_job_loses_nothing(stack: Stack) -> None:
    conn = redis.Redis.from_url(stack.redis.url)
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        running = [submit(c, 4000)]
        wait_running(c, running)
        queued = submit(c, 500)
    assert stack.serve is not None
    stack.serve.kill()  # SIGKILL: no clean shutdown
    stack.serve.wait(10)
    stack.start_serve()
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        for i in [*running, queued]:
            wait_until(lambda i=i: c.get(f"/api/jobs/{i}").json()["status"] == "finished", 120, 0.3, what=i)
            assert successful_runs(conn, i) == 1
