"""The sweeper's grace period, step by step against a real redis-server: a started job whose worker
has no heartbeat is re-queued only after Redis has been reachable for `requeue_grace_s`, and a Redis
restart (new run id) starts the wait again. A worker that is alive after all takes its job back."""

from __future__ import annotations

import time

from conftest import RedisServer
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus

from backend.config import Settings
from backend.jobs.connection import connect
from backend.jobs.worker import BiaslabWorker, Sweeper

GRACE_S = 1.5


def started_job(conn, queue_name: str, worker: str) -> tuple[Job, Execution]:  # type: ignore[no-untyped-def]
    """A job in the started registry of `worker`, as rq's own worker leaves it while running."""
    queue = Queue(queue_name, connection=conn)
    job = queue.enqueue("builtins.len", [1, 2])
    queue.remove(job.id)
    with conn.pipeline() as pipe:
        job.prepare_for_execution(worker, pipeline=pipe)
        execution = Execution.create(job, ttl=600, pipeline=pipe, worker_name=worker)
        pipe.execute()
    return job, execution


def test_no_requeue_until_redis_has_been_back_for_the_grace_period(redis_server: RedisServer) -> None:
    settings = Settings(redis_url=redis_server.url, requeue_grace_s=GRACE_S)
    conn = connect(redis_server.url, role="api", settings=settings)
    sweeper = Sweeper(conn, settings)  # not started: sweep() by hand
    job, _ = started_job(conn, settings.queue_name, "ghost-worker")  # "ghost" has no heartbeat key

    assert sweeper.sweep() == []  # first contact: the grace period starts now
    time.sleep(GRACE_S + 1.1)  # + 1 s: Redis reports its uptime in whole seconds, rounded down
    assert sweeper.sweep() == [job.id]  # still no heartbeat after the grace period: re-queued
    assert Queue(settings.queue_name, connection=conn).job_ids == [job.id]

    # A restart (persistence off here, so re-create the job) restarts the wait, even for a
    # sweeper that never saw an error: Redis's run id changed.
    redis_server.stop()
    redis_server.start()
    job, _ = started_job(conn, settings.queue_name, "ghost-worker")
    assert sweeper.sweep() == []
    time.sleep(GRACE_S + 1.1)
    assert sweeper.sweep() == [job.id]


def test_live_worker_takes_its_job_back_from_the_queue(redis_server: RedisServer) -> None:
    settings = Settings(redis_url=redis_server.url, requeue_grace_s=0)
    conn = connect(redis_server.url, role="api", settings=settings)
    job, execution = started_job(conn, settings.queue_name, "slow-worker")
    worker = BiaslabWorker([settings.queue_name], connection=connect(redis_server.url), name="slow-worker")
    worker.running = (job, execution)  # it is still computing this job
    assert Sweeper(conn, settings).sweep() == [job.id]  # its heartbeat lapsed: the sweeper re-queues
    worker.reassert_job(conn)  # the heartbeat is back: the worker claims the job again
    queue = Queue(settings.queue_name, connection=conn)
    assert queue.job_ids == []
    assert Job.fetch(job.id, connection=conn).get_status() == JobStatus.STARTED
    assert job.id in queue.started_job_registry.get_job_ids()
    # Should it die after all, the next sweep re-queues it again (its claim was released).
    assert Sweeper(conn, settings).sweep() == [job.id]
