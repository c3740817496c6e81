"""rq's per-job bookkeeping, trimmed where it repeats itself: the worker's own heartbeat at most once a
second unless it asks for a longer life, a state it already wrote not written again, and no INFO per
dequeue on the embedded store. Against a real redis-server, counting the commands the client sends."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import fakeredis
import pytest
import redis
from conftest import RedisServer
from rq import Queue, SimpleWorker
from rq.job import JobStatus
from rq.utils import get_version
from rq.worker import WorkerStatus

from backend.jobs import worker as worker_module
from backend.jobs.connection import RQ_VERSION_FOR_FAKEREDIS, connect
from backend.jobs.worker import BiaslabWorker


def counting(conn: redis.Redis) -> Counter[str]:
    """Count the commands `conn` sends outside pipelines (rq's unpipelined writes are what we trim)."""
    sent: Counter[str] = Counter()
    send = conn.execute_command

    def execute_command(*args: Any, **kwargs: Any) -> Any:
        sent[str(args[0]).upper()] += 1
        return send(*args, **kwargs)

    conn.execute_command = execute_command  # type: ignore[method-assign]
    return sent


def test_repeated_heartbeats_are_skipped_but_a_longer_life_is_not(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "BEAT_AT_MOST_EVERY_S", 0.5)
    conn = redis.Redis.from_url(redis_server.url)
    worker = BiaslabWorker(["q"], connection=conn, name="beats")
    worker.register_birth()
    sent = counting(conn)

    worker.heartbeat()
    first = conn.hget(worker.key, "last_heartbeat")
    assert sent["HSET"] == 1 and 0 < conn.ttl(worker.key) <= worker.worker_ttl + 60

    worker.heartbeat()  # within the interval, same life: nothing sent
    assert sent["HSET"] == 1

    worker.heartbeat(worker.worker_ttl + 600)  # a longer life is written at once
    assert sent["HSET"] == 2 and conn.ttl(worker.key) > worker.worker_ttl + 60

    time.sleep(0.6)
    worker.heartbeat()
    assert sent["HSET"] == 3 and conn.hget(worker.key, "last_heartbeat") != first

    with conn.pipeline() as pipe:  # in rq's own pipelines the beat is always written
        worker.heartbeat(pipeline=pipe)
        assert len(pipe.command_stack) == 3


def test_a_state_is_written_once_and_every_change_is_written(redis_server: RedisServer) -> None:
    conn = redis.Redis.from_url(redis_server.url)
    worker = BiaslabWorker(["q"], connection=conn, name="states")
    worker.register_birth()
    sent = counting(conn)

    worker.set_state(WorkerStatus.IDLE)
    worker.set_state(WorkerStatus.IDLE)
    assert sent["HSET"] == 1
    worker.set_state(WorkerStatus.BUSY)
    assert sent["HSET"] == 2 and conn.hget(worker.key, "state") == b"busy"
    worker.set_state(WorkerStatus.IDLE)
    assert conn.hget(worker.key, "state") == b"idle"


def burst(conn: redis.Redis, worker_class: type[SimpleWorker]) -> Counter[str]:
    """Eight quick jobs back to back in a burst of `worker_class`; what it sent, outside pipelines."""
    conn.flushall()
    queue = Queue("q", connection=conn)
    jobs = [queue.enqueue("builtins.len", [1] * n) for n in range(1, 9)]
    worker = worker_class([queue], connection=conn, name=worker_class.__name__)
    sent = counting(conn)
    worker.work(burst=True, with_scheduler=False)
    conn.execute_command = redis.Redis.execute_command.__get__(conn)  # type: ignore[method-assign]
    assert [job.get_status(refresh=True) for job in jobs] == [JobStatus.FINISHED] * len(jobs)
    assert [job.return_value() for job in jobs] == list(range(1, 9))
    return sent


def test_back_to_back_jobs_all_finish_with_half_of_rqs_unpipelined_writes(redis_server: RedisServer) -> None:
    conn = redis.Redis.from_url(redis_server.url)
    ours, rqs = burst(conn, BiaslabWorker), burst(conn, SimpleWorker)
    # rq alone beats three times per job (HSET + 2 EXPIRE each) and writes "idle" twice
    assert ours["HSET"] + ours["EXPIRE"] <= (rqs["HSET"] + rqs["EXPIRE"]) / 2


def test_the_embedded_store_never_asks_for_info() -> None:
    client = connect(None)

    def no_info(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("INFO sent to the embedded store")

    client.info = no_info  # type: ignore[method-assign]
    assert isinstance(client, fakeredis.FakeRedis)
    # Below 6.2 rq dequeues with BLPOP, which fakeredis blocks on (its BLMOVE returns at once)
    assert get_version(client) == RQ_VERSION_FOR_FAKEREDIS < (6, 2, 0)
