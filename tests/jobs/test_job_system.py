"""The job system end to end, in both modes, through real processes:

- embedded: one `biaslab serve` with in-process workers, no Redis server;
- redis: a real redis-server, `biaslab serve --redis` and two `biaslab worker` processes, one of them
  with two worker threads (`--threads 2`).

Jobs run the real `predict` lab on the shipped `cnn-shapes` model; long jobs use its test-time
augmentation so there is something to cancel, time out or kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from conftest import RedisServer, free_port, need_binary, start_biaslab, wait_healthy, wait_until

MODEL = "cnn-shapes"
# Short heartbeats so a killed worker's job is re-queued quickly.
FAST_RECOVERY = {"BIASLAB_HEARTBEAT_TTL_S": "3", "BIASLAB_SWEEP_INTERVAL_S": "0.5"}


@dataclass
class Stack:
    mode: str
    url: str
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis: RedisServer | None = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def start_worker(self, name: str, threads: int = 1) -> subprocess.Popen[bytes]:
        assert self.redis is not None
        args = ["worker", "--redis", self.redis.url, "--threads", str(threads)]
        proc = start_biaslab(args, self.tmp / f"{name}.log", FAST_RECOVERY)
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs + self.workers:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs + self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.redis:
            self.redis.stop()


@pytest.fixture(scope="module", params=["embedded", "redis"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(request.param)
    port = free_port()
    st = Stack(request.param, f"http://127.0.0.1:{port}", tmp)
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    try:
        if request.param == "redis":
            st.redis = RedisServer(need_binary("redis-server", "Redis mode"), free_port(), tmp)
            st.redis.start()
            args += ["--redis", st.redis.url, "--workers", "0"]
        else:
            args += ["--workers", "1"]
        serve = start_biaslab(args, tmp / "serve.log", FAST_RECOVERY)
        st.procs.append(serve)
        if st.redis:
            st.start_worker("worker-a")
            st.start_worker("worker-b", threads=2)
        wait_healthy(st.url, serve, tmp / "serve.log")
        expected = 3 if st.redis else 1
        with st.client() as c:
            wait_until(lambda: c.get("/api/health").json()["workers"] >= expected, 120, 0.5, what="workers")
        yield st
    finally:
        st.stop()


def example_id(c: httpx.Client) -> str:
    return str(c.get("/api/examples").json()[0]["image_id"])


def submit(c: httpx.Client, params: dict | None = None, timeout_s: int | None = None) -> str:
    body: dict = {"lab": "predict", "models": [MODEL], "image_id": example_id(c), "params": params or {}}
    if timeout_s:
        body["timeout_s"] = timeout_s
    r = c.post("/api/jobs", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    return str(r.json()["id"])


def wait_done(c: httpx.Client, job_id: str, timeout: float) -> dict:
    def done() -> dict | None:
        view = c.get(f"/api/jobs/{job_id}").json()
        return view if view["status"] in ("finished", "failed", "cancelled") else None

    result: dict = wait_until(done, timeout, 0.2, what=f"job {job_id}")
    return result


def wait_started(c: httpx.Client, job_id: str) -> dict:
    def started() -> dict | None:
        view = c.get(f"/api/jobs/{job_id}").json()
        assert view["status"] in ("queued", "started"), view
        return view if view["status"] == "started" and view["progress"] > 0.05 else None

    result: dict = wait_until(started, 60, 0.1, what=f"job {job_id} to start")
    return result


LONG = {"tta_samples": 20000}


def test_twenty_jobs_at_once_all_finish(stack: Stack) -> None:
    with stack.client() as c:
        ids = [submit(c, {"top_k": 1 + i % 5}) for i in range(20)]
        views = [wait_done(c, i, 180) for i in ids]
    assert [v["status"] for v in views] == ["finished"] * 20
    for i, v in enumerate(views):
        bars = v["result"]["figures"][1]["data"][0]  # figures[0] is the image and the model input
        assert len(bars["y"]) == 1 + i % 5  # each job honoured its own parameters
        assert v["progress"] == 1.0


def test_cancelled_job_ends_cancelled(stack: Stack) -> None:
    with stack.client() as c:
        job_id = submit(c, LONG)
        wait_started(c, job_id)
        assert c.delete(f"/api/jobs/{job_id}").status_code == 202
        view = wait_done(c, job_id, 30)
        assert view["status"] == "cancelled"
        assert view["result"] is None
        # The queue keeps working after a cancellation.
        assert wait_done(c, submit(c), 60)["status"] == "finished"


def test_a_waiting_request_answers_when_its_job_ends(stack: Stack) -> None:
    """`GET /api/jobs/{id}?wait=S` answers the moment the job ends (cancelled or finished), not when S
    runs out; when S runs out first it answers with the job's state then."""
    with stack.client() as c, stack.client() as other:
        job_id = submit(c, LONG)
        wait_started(c, job_id)
        asked = time.monotonic()
        view = c.get(f"/api/jobs/{job_id}", params={"wait": 0.5}).json()
        assert view["status"] == "started"
        assert time.monotonic() - asked >= 0.5

        with ThreadPoolExecutor(1) as pool:
            asked = time.monotonic()
            waiting = pool.submit(lambda: other.get(f"/api/jobs/{job_id}", params={"wait": 30}).json())
            time.sleep(0.5)  # the request is waiting by now
            assert c.delete(f"/api/jobs/{job_id}").status_code == 202
            view = waiting.result()
        assert view["status"] == "cancelled"
        assert time.monotonic() - asked < 30

        asked = time.monotonic()
        fresh = submit(c)
        view = c.get(f"/api/jobs/{fresh}", params={"wait": 30}).json()
        assert view["status"] == "finished" and view["result"]["figures"]
        assert (view["progress"], view["message"]) == (1.0, "done")  # not the last progress report
        assert time.monotonic() - asked < 30
        for bad in ("-1", "31", "nan", "soon"):
            assert c.get(f"/api/jobs/{fresh}", params={"wait": bad}).status_code == 422, bad
        assert c.get(f"/api/jobs/{fresh}", params={"wait": 1, "until": "soon"}).status_code == 422


def test_a_waiting_request_answers_when_its_queued_job_starts(stack: Stack) -> None:
    """With `until=change` a queued job's `?wait=` answers the moment a worker starts it, so a page waiting
    in the queue asks once per long wait rather than several times a second, and still shows the progress
    from the start; a plain `?wait=` (`until=end`) is not woken by the start."""
    with stack.client() as c, stack.client() as other, stack.client() as third:
        busy = c.get("/api/health").json()["workers"]  # occupy every worker (1 embedded, 2 on Redis)
        blockers = [submit(c, LONG) for _ in range(busy)]
        for b in blockers:
            wait_started(c, b)
        queued = submit(c, LONG)
        path = f"/api/jobs/{queued}"
        with ThreadPoolExecutor(2) as pool:
            on_change = pool.submit(lambda: other.get(path, params={"wait": 30, "until": "change"}).json())
            on_end = pool.submit(lambda: third.get(path, params={"wait": 4}).json())
            time.sleep(0.5)  # both requests are waiting by now, on a job that is still queued
            assert c.get(path).json()["status"] == "queued"
            freed = time.monotonic()
            for b in blockers:
                assert c.delete(f"/api/jobs/{b}").status_code == 202
            view = on_change.result()
            answered = time.monotonic() - freed
            # A LONG job runs on for minutes: the end-only request answers "started" when its 4 s run out.
            assert on_end.result()["status"] == "started"
            assert time.monotonic() - freed >= 3.4
        # Answered when a freed worker started it, long before its 30 s ran out (an answer at the timeout
        # would say "started" too, but only after 30 s).
        assert view["status"] == "started" and view["message"] != "queued"
        assert answered < 15
        assert c.delete(path).status_code == 202
        assert wait_done(c, queued, 30)["status"] == "cancelled"


def test_queued_job_can_be_cancelled_before_it_starts(stack: Stack) -> None:
    with stack.client() as c:
        busy = c.get("/api/health").json()["workers"]  # occupy every worker (1 embedded, 2 on Redis)
        blockers = [submit(c, LONG) for _ in range(busy)]
        for b in blockers:
            wait_started(c, b)
        waiting = submit(c)
        assert c.delete(f"/api/jobs/{waiting}").status_code == 202
        assert c.get(f"/api/jobs/{waiting}").json()["status"] == "cancelled"
        for b in blockers:
            c.delete(f"/api/jobs/{b}")
        for b in blockers:
            assert wait_done(c, b, 30)["status"] == "cancelled"


def test_job_over_its_timeout_fails_with_a_clear_error(stack: Stack) -> None:
    with stack.client() as c:
        view = wait_done(c, submit(c, LONG, timeout_s=2), 60)
    assert view["status"] == "failed"
    assert "time limit of 2 s" in view["error"]


def test_unknown_job_is_404(stack: Stack) -> None:
    with stack.client() as c:
        r = c.get("/api/jobs/does-not-exist")
        assert r.status_code == 404
        assert "unknown" in r.json()["detail"]
        assert c.delete("/api/jobs/does-not-exist").status_code == 404


def test_killed_worker_job_finishes_on_the_other_worker(stack: Stack) -> None:
    if stack.mode != "redis":
        pytest.skip("worker processes exist only in Redis mode")
    assert stack.redis is not None
    from rq.job import Job

    conn = redis.Redis.from_url(stack.redis.url)
    with stack.client() as c:
        job_id = submit(c, {"tta_samples": 8000})
        wait_started(c, job_id)
        victim_name = Job.fetch(job_id, connection=conn).worker_name
        assert victim_name
        victim_pid = int(victim_name.split("-")[-2])
        victim = next(p for p in stack.workers if p.pid == victim_pid)
        killed_at = time.monotonic()
        os.kill(victim_pid, signal.SIGKILL)
        victim.wait(10)

        def rerunning() -> bool:
            job = Job.fetch(job_id, connection=conn)
            return job.get_status() != "started" or job.worker_name != victim_name

        # Re-queued and picked up within 30 s; the re-run itself may take longer on a busy machine.
        wait_until(rerunning, 30, 0.2, what="the killed worker's job to be taken over")
        assert time.monotonic() - killed_at < 30
        view = wait_done(c, job_id, 240)
    assert view["status"] == "finished", view
    final = Job.fetch(job_id, connection=conn)
    assert final.worker_name != victim_name
    # Exactly one successful completion recorded for the job.
    assert len([r for r in final.results() if r.type.name == "SUCCESSFUL"]) == 1
    stack.start_worker("worker-c")  # restore two workers for the tests after this one
    with stack.client() as c:
        wait_until(lambda: c.get("/api/health").json()["workers"] >= 2, 60, 0.5, what="replacement worker")


def test_api_and_workers_reconnect_after_redis_restarts(stack: Stack) -> None:
    if stack.mode != "redis":
        pytest.skip("only the Redis mode has a server to restart")
    assert stack.redis is not None
    stack.redis.stop()
    with stack.client() as c:
        r = c.get("/api/health")
        assert r.status_code == 503  # a clear "queue unavailable", not a 500
        stack.redis.start()
        # Same port, empty database: the workers re-register and pick up new jobs by themselves.
        wait_until(lambda: c.get("/api/health").json().get("workers", 0) >= 1, 60, 0.5, what="workers back")
        view = wait_done(c, submit(c), 60)
    assert view["status"] == "finished"


def test_threaded_worker_shares_jobs_and_stops_cleanly_on_sigterm(stack: Stack) -> None:
    """`biaslab worker --threads 2`: two workers in one process take jobs side by side, and SIGTERM
    stops both after their current jobs, with exit status 0 and nothing left running."""
    if stack.mode != "redis":
        pytest.skip("worker processes exist only in Redis mode")
    assert stack.redis is not None
    from rq.job import Job

    conn = redis.Redis.from_url(stack.redis.url)
    proc = stack.start_worker("worker-threads", threads=2)
    with stack.client() as c:
        wait_until(
            lambda: (
                sum(f"-{proc.pid}-" in w["name"] for w in c.get("/api/health").json()["worker_info"]) == 2
            ),
            120,
            0.5,
            what="the two threads of the new worker",
        )
        ids = [submit(c, {"tta_samples": 1500}) for _ in range(8)]
        views = [wait_done(c, i, 240) for i in ids]
        assert [v["status"] for v in views] == ["finished"] * 8
        names = {Job.fetch(i, connection=conn).worker_name for i in ids}
        assert len({n for n in names if n and f"-{proc.pid}-" in n}) == 2  # both threads ran jobs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        wait_until(
            lambda: all(f"-{proc.pid}-" not in w["name"] for w in c.get("/api/health").json()["worker_info"]),
            30,
            0.5,
            what="the stopped worker's heartbeats to go",
        )
