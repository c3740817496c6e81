"""Workers: rq SimpleWorker (no fork: models stay loaded, CUDA is never re-initialised in a child),
a liveness heartbeat, and the sweeper that re-queues jobs of dead workers within seconds.

rq's own abandoned-job cleanup waits for the job's timeout plus 60 s margins, far too slow for a
classroom. So each worker refreshes a short-TTL key; when a worker's key has expired, its started jobs
are put back at the front of the queue (claimed with SET NX so two sweepers never double-queue).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from backend.config import Settings
from backend.jobs.connection import connect
from backend.jobs.execute import bind_worker, unbind_worker
from backend.jobs.keys import alive_key, requeue_claim_key

log = logging.getLogger("biaslab.worker")


def worker_name(prefix: str = "biaslab") -> str:
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Heartbeat:
    """Keeps `alive_key(name)` set with a short TTL while the process (or thread) lives.

    The key's value is the worker's device, so `/api/health` can say where each live worker runs jobs.
    """

    def __init__(self, conn: redis.Redis, name: str, ttl_s: int, device: str = "cpu") -> None:
        self.conn, self.name, self.ttl_s, self.device = conn, name, ttl_s, device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def start(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        try:
            self.conn.set(alive_key(self.name), self.device, ex=self.ttl_s)
        except redis.RedisError as exc:  # Redis restarting: keep trying, the worker reconnects too
            log.warning("heartbeat for %s failed: %s", self.name, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self.conn.delete(alive_key(self.name))


def alive_workers(conn: redis.Redis) -> dict[str, str]:
    """Workers whose heartbeat is fresh, with their device (rq keeps dead workers registered for minutes)."""
    prefix = alive_key("")
    keys = [
        k.decode() if isinstance(k, bytes) else k for k in conn.scan_iter(match=alive_key("*"), count=1000)
    ]
    values = conn.mget(keys) if keys else []
    return {
        k.removeprefix(prefix): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in zip(keys, values, strict=True)
        if v is not None
    }


def count_alive_workers(conn: redis.Redis) -> int:
    return len(alive_workers(conn))


class BiaslabWorker(SimpleWorker):
    """SimpleWorker that also runs in a non-main thread (embedded mode)."""

    stop_asked = False

    def request_stop(self, signum, frame):  # type: ignore[no-untyped-def]
        # rq raises StopRequested when idle without recording why; remember it so we don't restart.
        self.stop_asked = True
        super().request_stop(signum, frame)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()


class ThreadWorker(BiaslabWorker):
    # SIGALRM only reaches the main thread; a timer thread raises the timeout inside the job instead.
    death_penalty_class = TimerDeathPenalty


def requeue_dead_workers_jobs(conn: redis.Redis, queue_name: str) -> list[str]:
    """Put the started jobs of workers whose heartbeat expired back at the front of the queue."""
    queue = Queue(queue_name, connection=conn)
    registry = StartedJobRegistry(queue=queue)
    requeued = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        try:
            job = Job.fetch(job_id, connection=conn)
        except NoSuchJobError:
            conn.zrem(registry.key, f"{job_id}:{execution_id}")
            continue
        owner = job.worker_name
        if job.get_status(refresh=False) != JobStatus.STARTED or not owner or conn.exists(alive_key(owner)):
            continue
        if not conn.set(requeue_claim_key(job_id, execution_id), 1, nx=True, ex=3600):
            continue  # another sweeper got there first
        conn.zrem(registry.key, f"{job_id}:{execution_id}")
        job.meta.update(progress=0.0, message=f"re-queued: worker {owner} stopped responding")
        job.save_meta()
        queue.enqueue_job(job, at_front=True)
        requeued.append(job_id)
        log.warning("re-queued job %s of dead worker %s", job_id, owner)
    return requeued


class Sweeper:
    def __init__(self, conn: redis.Redis, settings: Settings) -> None:
        self.conn, self.settings = conn, settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="biaslab-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                requeue_dead_workers_jobs(self.conn, self.settings.queue_name)
            except redis.RedisError as exc:
                log.warning("sweeper: %s", exc)
            except Exception:
                log.exception("sweeper failed")

    def stop(self) -> None:
        self._stop.set()


class EmbeddedWorkers:
    """Worker threads inside the API process (the laptop default; also usable beside Redis)."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings, self.count = settings, count
        self.workers: list[ThreadWorker] = []
        self.heartbeats: list[Heartbeat] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> EmbeddedWorkers:
        for i in range(self.count):
            conn = connect(self.settings.redis_url)
            name = worker_name(f"biaslab-embedded{i}")
            worker = ThreadWorker([self.settings.queue_name], connection=conn, name=name)
            bind_worker(name, self.settings)
            self.heartbeats.append(
                Heartbeat(conn, name, self.settings.heartbeat_ttl_s, self.settings.device).start()
            )
            thread = threading.Thread(target=self._work, args=(worker,), name=name, daemon=True)
            thread.start()
            self.workers.append(worker)
            self.threads.append(thread)
        return self

    @staticmethod
    def _work(worker: ThreadWorker) -> None:
        worker.work(with_scheduler=False, logging_level="WARNING")

    def stop(self) -> None:
        for worker in self.workers:
            worker._stop_requested = True
        for hb in self.heartbeats:
            hb.stop()
            unbind_worker(hb.name)


def run_worker_process(settings: Settings, burst: bool = False) -> None:
    """`biaslab worker`: one process, models stay loaded; survives Redis restarts."""
    from backend.models.registry import register_timm_specs

    register_timm_specs(settings.timm_models)  # the API's own timm checkpoints, so their jobs run here
    conn = connect(settings.redis_url)
    name = worker_name()
    bind_worker(name, settings)
    heartbeat = Heartbeat(conn, name, settings.heartbeat_ttl_s, settings.device).start()
    sweeper = Sweeper(conn, settings).start()
    try:
        while True:
            worker = BiaslabWorker([settings.queue_name], connection=conn, name=name)
            try:
                worker.work(with_scheduler=False, burst=burst, logging_level="INFO")
            except redis.ConnectionError as exc:
                # rq gives up on some connection errors; wait for Redis to come back and start again.
                log.warning("lost Redis (%s); reconnecting", exc)
                time.sleep(1.0)
                continue
            if burst or worker.stop_asked or worker._stop_requested:
                break
            # rq's loop ended on an error (e.g. Redis restarted mid-call): start a fresh worker.
            time.sleep(1.0)
            unbind_worker(name)
            name = worker_name()
            bind_worker(name, settings)
            heartbeat.stop()
            heartbeat = Heartbeat(conn, name, settings.heartbeat_ttl_s, settings.device).start()
    finally:
        heartbeat.stop()
        sweeper.stop()
