"""A small class-sized burst over real HTTP against a real redis-server: 24 simulated students press
Run four times each, at once. Every accepted job finishes, every refusal is a 429 with Retry-After
(per-student bucket or full queue), and nothing answers 5xx."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from conftest import RedisServer, free_port, wait_until

from backend.config import Settings
from backend.main import create_app

STUDENTS, PRESSES, BURST, QUEUE = 24, 4, 3, 12


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_server.url,
        workers=2,  # worker threads in the API process, on the real Redis queue
        max_queued_jobs=QUEUE,
        rate_limit_per_minute=1,  # no refill during the burst: each student gets exactly BURST
        rate_limit_burst=BURST,
    )
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(settings, mount_ui=False), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, 120, what="uvicorn")
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(30)


def test_class_burst_every_accepted_job_finishes_and_the_rest_get_429(server: str) -> None:
    body = {"lab": "predict", "models": ["cnn-shapes"], "image_id": "example-shapes-circle"}
    answers: list[tuple[int, str | None, str | None]] = []  # (status, job id or error, Retry-After)
    lock = threading.Lock()
    go = threading.Event()

    def student(i: int) -> None:
        # Loopback is a trusted proxy: X-Forwarded-For names the student, as the UI would.
        headers = {"x-forwarded-for": f"198.51.100.{i}"}
        with httpx.Client(base_url=server, timeout=60) as c:
            go.wait()
            for _ in range(PRESSES):
                r = c.post("/api/jobs", json=body, headers=headers)
                job = r.json()["id"] if r.status_code == 202 else r.json().get("detail")
                with lock:
                    answers.append((r.status_code, job, r.headers.get("retry-after")))

    threads = [threading.Thread(target=student, args=(i,)) for i in range(STUDENTS)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(120)

    statuses = Counter(status for status, _, _ in answers)
    assert len(answers) == STUDENTS * PRESSES
    assert set(statuses) <= {202, 429}, statuses
    assert all(retry is not None and int(retry) >= 1 for status, _, retry in answers if status == 429)
    # Every student's 4th press is over its bucket (refusals use tokens too); the queue limit
    # refuses others among the first three.
    over_bucket = [a for a in answers if a[0] == 429 and "from this address" in str(a[1])]
    queue_full = [a for a in answers if a[0] == 429 and "queue is full" in str(a[1])]
    assert len(over_bucket) == STUDENTS * (PRESSES - BURST)
    assert queue_full and len(over_bucket) + len(queue_full) == statuses[429]
    accepted = [job for status, job, _ in answers if status == 202]
    assert accepted and len(set(accepted)) == len(accepted)

    with httpx.Client(base_url=server, timeout=30) as c:

        def all_done() -> bool:
            views = [c.get(f"/api/jobs/{j}") for j in accepted]
            assert all(v.status_code == 200 for v in views), [v.status_code for v in views]
            return all(v.json()["status"] in ("finished", "failed", "cancelled") for v in views)

        t0 = time.monotonic()
        wait_until(all_done, 300, 0.5, what="accepted jobs to end")
        final = Counter(c.get(f"/api/jobs/{j}").json()["status"] for j in accepted)
    assert final == {"finished": len(accepted)}, final
    print(
        f"\n{len(answers)} submissions: {statuses[202]} accepted, {len(over_bucket)} over the per-client "
        f"bucket, {len(queue_full)} queue full; "
        f"all accepted finished {time.monotonic() - t0:.1f} s after the burst"
    )
