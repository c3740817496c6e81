"""Backpressure: a per-client token bucket and a queue-length limit, both answering 429 with
Retry-After; the queue limit drops nothing already queued (real redis-server, real rq worker)."""

from __future__ import annotations

import time

import pytest
import redis
from conftest import RedisServer
from fastapi.testclient import TestClient
from rq import Queue

from backend.api.ratelimit import TokenBuckets, client_key
from backend.config import Settings
from backend.jobs.worker import run_worker_process
from backend.main import create_app

MODEL = "cnn-shapes"


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_against_its_closed_form() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert buckets.take("a") == pytest.approx(0.5)  # one token every 1/rate s
    assert buckets.take("b") == 0.0  # buckets are per client
    clock.t += 0.25  # half a token
    assert buckets.take("a") == pytest.approx(0.25)
    clock.t += 10.0  # refill is capped at the burst
    assert [buckets.take("a") for _ in range(4)][-1] == pytest.approx(0.5)


def test_token_bucket_forgets_the_oldest_clients_first() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, max_clients=2, clock=FakeClock())
    for key in ("a", "b", "c"):
        assert buckets.take(key) == 0.0
    assert buckets.take("a") == 0.0  # "a" was dropped (full bucket again); "c" was not
    assert buckets.take("c") > 0.0


def test_client_key() -> None:
    trusted = ["127.0.0.1", "10.0.0.0/8"]
    assert client_key("203.0.113.9", "1.2.3.4", trusted) == "203.0.113.9"  # untrusted peer: XFF ignored
    assert client_key("127.0.0.1", None, trusted) is None  # the mounted UI without a client address
    assert client_key("10.1.2.3", "6.6.6.6, 198.51.100.7", trusted) == "198.51.100.7"  # proxy's own entry
    assert client_key("127.0.0.1", "198.51.100.8", trusted) == "198.51.100.8"
    # The UI on loopback forwards a browser that came through a trusted front proxy (a Space's): the
    # student is the nearest untrusted hop, and what the student claimed further left is ignored.
    assert client_key("127.0.0.1", "6.6.6.6, 198.51.100.9, 10.0.0.5", trusted) == "198.51.100.9"


def bad_job(c: TestClient, **headers: str):  # type: ignore[no-untyped-def]
    return c.post("/api/jobs", json={"lab": "no-such-lab"}, headers=headers)


def test_per_client_rate_limit_answers_429_with_retry_after() -> None:
    # One token a minute: a loaded machine cannot refill the bucket while the test runs.
    settings = Settings(rate_limit_per_minute=1, rate_limit_burst=3)
    with TestClient(create_app(settings, mount_ui=False)) as c:
        c.get("/api/labs")  # the first lab lookup imports the labs (seconds on a busy machine)
        t0 = time.monotonic()
        assert [bad_job(c).status_code for _ in range(3)] == [404, 404, 404]
        r = bad_job(c)
        elapsed = time.monotonic() - t0
        assert r.status_code == 429
        assert 60 - elapsed - 1 <= int(r.headers["retry-after"]) <= 60
        assert "at most 1 per minute" in r.json()["detail"]
        # Uploads draw on the same bucket; reads are never limited.
        assert c.post("/api/images", files={"file": ("x.png", b"x", "image/png")}).status_code == 429
        assert c.get("/api/health").status_code == 200


def test_rate_limit_behind_a_trusted_proxy_is_per_forwarded_client() -> None:
    settings = Settings(rate_limit_per_minute=1, rate_limit_burst=1, trusted_proxies=["testclient"])
    with TestClient(create_app(settings, mount_ui=False)) as c:
        c.get("/api/labs")
        assert bad_job(c, **{"x-forwarded-for": "198.51.100.1"}).status_code == 404
        assert bad_job(c, **{"x-forwarded-for": "198.51.100.1"}).status_code == 429
        assert bad_job(c, **{"x-forwarded-for": "198.51.100.2"}).status_code == 404
        assert [bad_job(c).status_code for _ in range(3)] == [404] * 3  # the proxy itself: not limited


def test_full_queue_answers_429_and_keeps_every_queued_job(redis_server: RedisServer) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        workers=0,
        max_queued_jobs=3,
        queue_full_retry_after_s=7,
        rate_limit_per_minute=0,
    )
    body = {"lab": "predict", "models": [MODEL], "image_id": "example-shapes-circle"}
    with TestClient(create_app(settings, mount_ui=False)) as c:
        ids = [c.post("/api/jobs", json=body).json()["id"] for _ in range(3)]
        r = c.post("/api/jobs", json=body)
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        assert "queue is full" in r.json()["detail"]
        conn = redis.Redis.from_url(redis_server.url)
        assert Queue(settings.queue_name, connection=conn).job_ids == ids  # nothing dropped or added
        run_worker_process(settings, burst=True)  # a real rq worker drains the queue, then returns
        assert [c.get(f"/api/jobs/{i}").json()["status"] for i in ids] == ["finished"] * 3
        assert c.post("/api/jobs", json=body).status_code == 202  # room again
