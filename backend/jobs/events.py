"""Job endings (and starts), pushed: `GET /api/jobs/{id}?wait=S` answers the moment the job ends instead
of being asked again and again.

A worker publishes a job's id on one Redis channel when the job ends (finished, failed, cancelled), and
on another when it starts; each API process runs one subscriber thread that wakes the requests waiting
on that id. Only requests that asked for it (`until=change`: the page, while its job is queued) are
woken by a start, so a page waiting in the queue asks once per long wait, not three times a second:
with a class on one embedded server those polls took the GIL from the worker. Nothing depends on a
message arriving: a request that misses one (Redis away, the subscriber reconnecting) answers when its
wait runs out, with the job's state read afresh, as a plain poll would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

import redis

from backend.jobs.keys import PREFIX

log = logging.getLogger("biaslab.events")

CHANNEL = f"{PREFIX}:job-ended"
STARTED_CHANNEL = f"{PREFIX}:job-started"


def announce_end(conn: redis.Redis, job_id: str) -> None:
    """Tell waiting requests that `job_id` ended. Best effort: a waiter that misses it re-reads later."""
    with contextlib.suppress(redis.RedisError):
        conn.publish(CHANNEL, job_id)


def announce_start(conn: redis.Redis, job_id: str) -> None:
    """Tell the requests waiting for a change that `job_id` started (best effort, as `announce_end`)."""
    with contextlib.suppress(redis.RedisError):
        conn.publish(STARTED_CHANNEL, job_id)


class JobEndings:
    """The API process's subscriber: `waiting(job_id)` gives an asyncio.Event set when the job ends (or,
    with `starts=True`, starts)."""

    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        self._connect = connect
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event, bool]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JobEndings:
        """Idempotent; an app's lifespan may run more than once (tests enter it again)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop = threading.Event()
            stop = self._stop
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="biaslab-job-endings", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @contextlib.contextmanager
    def waiting(self, job_id: str, starts: bool = False) -> Iterator[asyncio.Event]:
        """Register before reading the job's state, so an ending between the read and the wait is seen."""
        entry = (asyncio.get_running_loop(), asyncio.Event(), starts)
        with self._lock:
            self._waiters.setdefault(job_id, []).append(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                left = [e for e in self._waiters.get(job_id, []) if e is not entry]
                if left:
                    self._waiters[job_id] = left
                else:
                    self._waiters.pop(job_id, None)

    def _wake(self, job_id: str, started: bool = False) -> None:
        with self._lock:
            entries = [e for e in self._waiters.get(job_id, ()) if e[2] or not started]
        for loop, event, _ in entries:
            with contextlib.suppress(RuntimeError):  # that request's loop has closed
                loop.call_soon_threadsafe(event.set)

    def _run(self, stop: threading.Event) -> None:
        failing = False
        while not stop.is_set():
            pubsub = None
            try:
                pubsub = self._connect().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL, STARTED_CHANNEL)
                if failing:
                    log.warning("job endings: subscribed again")
                failing = False
                while not stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data, channel = message["data"], message.get("channel")
                        started = (
                            channel.decode() if isinstance(channel, bytes) else channel
                        ) == STARTED_CHANNEL
                        self._wake(data.decode() if isinstance(data, bytes) else str(data), started)
            except redis.RedisError as exc:
                if not failing:  # once per outage; waiters fall back to their timeout meanwhile
                    log.warning("job endings: lost the subscription (%s)", type(exc).__name__)
                failing = True
                stop.wait(0.5)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError):
                        pubsub.close()
