"""Workers: rq SimpleWorker (no fork: models stay loaded, CUDA is never re-initialised in a child),
a liveness heartbeat, and the sweeper that re-queues jobs of dead workers within seconds.

rq's own abandoned-job cleanup waits for the job's timeout plus 60 s margins, far too slow for a
classroom. So each worker refreshes a short-TTL key; when a worker's key has expired, its started jobs
are put back at the front of the queue (claimed with SET NX so two sweepers never double-queue).

A Redis outage must not look like dead workers: every liveness key may expire while Redis is away
(TTLs are wall-clock), although the workers are alive and still computing. So the sweeper re-queues
nothing until Redis has been reachable for a grace period (by its own errors, and by Redis's run id
and uptime, which catch a restart it did not see), and a worker's heartbeat, on reconnecting,
re-asserts its key at once and takes back its running job if some sweeper put it in the queue.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from backend.config import Settings
from backend.jobs.batching import BATCHER
from backend.jobs.connection import connect
from backend.jobs.events import announce_end, announce_start
from backend.jobs.execute import bind_worker, unbind_worker
from backend.jobs.keys import alive_key, requeue_claim_key

log = logging.getLogger("biaslab.worker")


def worker_name(prefix: str = "biaslab") -> str:
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Heartbeat:
    """Keeps `alive_key(name)` set with a short TTL while the process (or thread) lives.

    Uses a fast-failing connection of its own: after a failed beat it tries again every half second,
    so the key is back moments after Redis is, and then runs `on_reconnect` (job re-assertion).
    The key's value is the worker's device, so `/api/health` can say where each live worker runs jobs.
    """

    def __init__(
        self,
        conn: redis.Redis,
        name: str,
        ttl_s: int,
        on_reconnect: Callable[[redis.Redis], None] | None = None,
        device: str = "cpu",
    ) -> None:
        self.conn, self.name, self.ttl_s, self.on_reconnect = conn, name, ttl_s, on_reconnect
        self.device = device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)
        self._failing = False
        self._last_ok = time.monotonic()

    def start(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        try:
            self.conn.set(alive_key(self.name), self.device, ex=self.ttl_s)
            now = time.monotonic()
            # Late too (the process was stopped or starved past the TTL): a sweeper may have
            # taken our job for a dead worker's.
            late = now - self._last_ok > self.ttl_s
            if (self._failing or late) and self.on_reconnect is not None:
                self.on_reconnect(self.conn)
            self._failing, self._last_ok = False, now
        except redis.RedisError as exc:  # Redis away: keep trying, the worker waits for it too
            if not self._failing:
                log.warning("heartbeat for %s failed: %s", self.name, exc)
            self._failing = True

    def _run(self) -> None:
        while not self._stop.wait(0.5 if self._failing else self.ttl_s / 3):
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


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


# After this many jobs the frozen objects are thawed and collected once, so that a cycle among
# long-lived objects that later became garbage (an evicted model, say) is freed after all.
THAW_EVERY_JOBS = 100
_jobs_released = 0
# A full collection costs a few ms even with the survivors frozen, as much as a small job's forward
# pass; so it runs after a job that left the process this much bigger, or after this many jobs.
RELEASE_AFTER_GROWTH_BYTES = 32 * 1024 * 1024
RELEASE_EVERY_JOBS = 20


def resident_bytes() -> int | None:
    """This process's resident set size (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryKeeper:
    """Decides after each job whether `release_memory` is worth its cost."""

    def __init__(self) -> None:
        self.jobs_since = 0
        self.before: int | None = None

    def job_started(self) -> None:
        self.before = resident_bytes()

    def job_ended(self) -> None:
        self.jobs_since += 1
        after = resident_bytes()
        grew = self.before is None or after is None or after - self.before > RELEASE_AFTER_GROWTH_BYTES
        if grew or self.jobs_since >= RELEASE_EVERY_JOBS:
            release_memory()
            self.jobs_since = 0


def release_memory() -> None:
    """Give the heap a finished job freed back to the OS. glibc keeps it otherwise: a 512-step
    Integrated Gradients job left a worker at 2.3 GB resident instead of 1.1 GB, for good.

    What survives the collection (imported modules, loaded models: over half a million objects) is
    frozen, so the next collection scans only what later jobs created: a full collection of a worker
    with torch, timm and plotly loaded took about 1 s of the GIL after every job, stalling the API
    threads of an embedded server and delaying the worker's next job."""
    global _jobs_released
    _jobs_released += 1
    if _jobs_released % THAW_EVERY_JOBS == 0:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def count_alive_workers(conn: redis.Redis) -> int:
    return len(alive_workers(conn))


# rq's own worker heartbeat, repeated within milliseconds between back-to-back jobs, at most this often
# (the worker key it extends lives for minutes; the sweeper reads the separate liveness key instead)
BEAT_AT_MOST_EVERY_S = 1.0


class BiaslabWorker(SimpleWorker):
    """SimpleWorker that also runs in a non-main thread (embedded mode), and remembers in memory
    which job it runs, so it can claim that job back after a Redis outage."""

    stop_asked = False
    running: tuple[Job, Execution] | None = None  # the job this worker is computing, if any
    memory: MemoryKeeper | None = None

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        self.running = (job, execution)
        memory = self.memory = self.memory or MemoryKeeper()
        memory.job_started()
        try:
            return super().perform_job(job, queue, execution)
        finally:
            self.running = None
            announce_end(self.connection, job.id)  # rq has stored the result or the failure by now
            memory.job_ended()

    # rq writes the worker's heartbeat three times per job and its state twice, each outside any
    # pipeline: with the embedded in-memory Redis, about a tenth of the worker's busy time on a small
    # job. Repeats within a second, and a state it already wrote, are skipped.
    _beat_at = float("-inf")
    _beat_ttl = 0

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        ttl = timeout or self.worker_ttl + 60
        if pipeline is None:
            if time.monotonic() - self._beat_at < BEAT_AT_MOST_EVERY_S and ttl <= self._beat_ttl:
                return
            self._beat_at, self._beat_ttl = time.monotonic(), ttl
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        announce_start(self.connection, job.id)  # stored as started: a page waiting on it shows progress

    def reassert_job(self, conn: redis.Redis) -> None:
        """After an outage: if a sweeper re-queued our running job, take it back out of the queue
        (before another worker runs it a second time) and put it back in the started registry."""
        running = self.running
        if running is None:
            return
        job, execution = running
        queue = Queue(job.origin, connection=conn)
        if not conn.lrem(queue.key, 0, job.id):
            return
        with conn.pipeline() as pipe:
            StartedJobRegistry(queue=queue).add_execution(
                execution, pipeline=pipe, ttl=self.get_heartbeat_ttl(job), xx=False
            )
            pipe.hset(job.key, "status", JobStatus.STARTED.value)
            pipe.delete(requeue_claim_key(job.id, execution.id))  # re-queue it if we die after all
            pipe.execute()
        log.warning("took back job %s: it was re-queued while %s was still running it", job.id, self.name)

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
    """Re-queues the jobs of dead workers, but never within `grace` seconds of Redis coming back."""

    def __init__(self, conn: redis.Redis, settings: Settings) -> None:
        self.conn, self.settings = conn, settings
        grace = settings.requeue_grace_s
        self.grace_s = float(settings.heartbeat_ttl_s if grace is None else grace)
        self._reachable_since: float | None = None  # monotonic; None: not (yet) seen reachable
        self._run_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="biaslab-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def _server(self) -> tuple[str, float]:
        """Redis's run id (new on every restart) and uptime; the embedded stand-in never restarts."""
        try:
            info = self.conn.info("server")
        except redis.ResponseError:  # fakeredis has no INFO
            return "embedded", float("inf")
        return str(info["run_id"]), float(info["uptime_in_seconds"])

    def sweep(self) -> list[str]:
        """One pass; raises redis errors (and forgets how long Redis has been reachable)."""
        try:
            run_id, uptime = self._server()
            now = time.monotonic()
            if self._reachable_since is None or run_id != self._run_id:
                self._reachable_since, self._run_id = now, run_id
            if min(now - self._reachable_since, uptime) < self.grace_s:
                return []  # live workers may not have re-asserted their heartbeat yet
            return requeue_dead_workers_jobs(self.conn, self.settings.queue_name)
        except redis.RedisError:
            self._reachable_since = None
            raise

    def _run(self) -> None:
        down = False
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                self.sweep()
                if down:
                    log.warning("sweeper: Redis is back; re-queueing waits %.0f s", self.grace_s)
                down = False
            except redis.RedisError as exc:
                if not down:  # once per outage, not every sweep
                    log.warning("sweeper: Redis unavailable (%s)", type(exc).__name__)
                down = True
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
        BATCHER.configure(self.settings.batch_max_jobs, self.settings.batch_wait_ms / 1000)
        for i in range(self.count):
            conn = connect(self.settings.redis_url)
            name = worker_name(f"biaslab-embedded{i}")
            worker = ThreadWorker([self.settings.queue_name], connection=conn, name=name)
            bind_worker(name, self.settings)
            hb_conn = connect(self.settings.redis_url, role="api", settings=self.settings)
            heartbeat = Heartbeat(
                hb_conn, name, self.settings.heartbeat_ttl_s, worker.reassert_job, self.settings.device
            )
            self.heartbeats.append(heartbeat.start())
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


def run_worker_process(settings: Settings, burst: bool = False, threads: int = 1) -> None:
    """`biaslab worker`: one process, models stay loaded; survives Redis restarts.

    With `threads` > 1 the process runs that many workers on the same loaded models, so concurrent
    jobs for the same models can share batched forward passes (backend/jobs/batching.py).
    """
    from backend.models.registry import register_timm_specs

    register_timm_specs(settings.timm_models)  # the API's own timm checkpoints, so their jobs run here
    from backend.models.imagenet import register_model_set

    register_model_set(settings.model_set)  # the API's model set too (BIASLAB_MODEL_SET)
    # Import the labs before the first heartbeat: extension imports hold the GIL for seconds on a
    # busy machine, long enough to starve the heartbeat thread past its TTL inside the first job.
    from backend.labs.base import list_labs

    list_labs()
    BATCHER.configure(settings.batch_max_jobs, settings.batch_wait_ms / 1000)
    sweeper = Sweeper(connect(settings.redis_url, role="api", settings=settings), settings).start()
    try:
        if threads <= 1:
            _work_until_stopped(settings, burst, BiaslabWorker, [])
            return
        current: list[BiaslabWorker] = []  # every thread's worker, to stop them on a signal
        beats: dict[int, Heartbeat] = {}  # by thread id
        stopping = threading.Event()

        def stop(signum: int, frame: object) -> None:
            log.warning("stopping %d worker threads after their current jobs", threads)
            for w in list(current):
                w.stop_asked = w._stop_requested = True  # take no new job
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        pool = [
            threading.Thread(
                target=_work_until_stopped, args=(settings, burst, ThreadWorker, current, beats), daemon=True
            )
            for _ in range(threads)
        ]
        for t in pool:
            t.start()
        # Idle threads sit in rq's blocking dequeue (minutes) and only a main-thread signal can break
        # it, so once every running job is done the process ends without them: their heartbeats are
        # removed here, and a job one of them dequeued meanwhile is re-queued by the sweeper.
        while any(t.is_alive() for t in pool):
            if stopping.is_set() and all(w.running is None for w in list(current)):
                break
            time.sleep(0.2)
        for hb in list(beats.values()):
            hb.stop()
        for w in list(current):
            with contextlib.suppress(redis.RedisError):
                w.register_death()
    finally:
        sweeper.stop()


def _work_until_stopped(
    settings: Settings,
    burst: bool,
    worker_class: type[BiaslabWorker],
    current: list[BiaslabWorker],
    beats: dict[int, Heartbeat] | None = None,
) -> None:
    """One worker's life: rq's loop, started again whenever a Redis error ends it."""
    conn = connect(settings.redis_url)  # waits out Redis outages: the running job survives them
    fast = connect(settings.redis_url, role="api", settings=settings)  # heartbeat
    name = worker_name()
    bind_worker(name, settings)
    holder: list[BiaslabWorker] = []

    def reassert(c: redis.Redis) -> None:
        if holder:
            holder[-1].reassert_job(c)

    heartbeat = Heartbeat(fast, name, settings.heartbeat_ttl_s, reassert, settings.device).start()
    beats = {} if beats is None else beats
    beats[threading.get_ident()] = heartbeat
    try:
        while True:
            worker = worker_class([settings.queue_name], connection=conn, name=name)
            if holder and holder[-1] in current:
                current.remove(holder[-1])
            holder[:] = [worker]
            current.append(worker)
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
            heartbeat = Heartbeat(fast, name, settings.heartbeat_ttl_s, reassert, settings.device).start()
            beats[threading.get_ident()] = heartbeat
    finally:
        heartbeat.stop()
        unbind_worker(name)
