"""Dynamic batching: forward passes that concurrent jobs make through the same model run as one pass.

Jobs run one per worker thread (`biaslab serve --workers N`, `biaslab worker --threads N`), and all the
threads of a process share its loaded models. When a lab asks for a forward pass (`LabContext.forward`),
the first caller for a (model, input shape) leads a batch: it waits up to `wait_s` for the other jobs in
flight to add their inputs (never when it is the only job, so a lone job pays nothing), then runs them as
one batch under the model's lock and hands each caller its own rows. Each job is still its own queue job,
so cancellation, time limits and the exactly-once fault handling are untouched.

On a CPU the gain is the per-call cost a small model pays once instead of N times; on a GPU it is the
batch parallelism. `biaslab bench` measures it (backend/bench/batching.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class _Request:
    x: torch.Tensor
    done: threading.Event = field(default_factory=threading.Event)
    out: torch.Tensor | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    batches: int = 0  # forward passes run
    requests: int = 0  # forward calls served by them
    largest: int = 0  # most calls in one pass


class ForwardBatcher:
    """One per process; `jobs()` counts the jobs in flight, `forward()` merges their passes."""

    # max_rows: inputs this large already keep the CPU busy (measured: merging test-time augmentation
    # batches of 64 made predict jobs slower, single images twice as fast), so they run alone.
    def __init__(self, max_jobs: int = 8, wait_s: float = 0.005, max_rows: int = 64) -> None:
        self.max_jobs, self.wait_s, self.max_rows = max_jobs, wait_s, max_rows
        self._cond = threading.Condition()
        self._pending: dict[Hashable, list[_Request]] = {}
        self._active = 0  # jobs inside `job()`
        self._inside = 0  # callers in a batch that has not run yet: not free to join another
        self.stats = BatchStats()

    def configure(self, max_jobs: int, wait_s: float) -> None:
        with self._cond:
            self.max_jobs, self.wait_s = max_jobs, wait_s

    @contextmanager
    def job(self) -> Iterator[None]:
        """Wrap each job: the leader of a batch stops waiting once every job in flight has joined."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def forward(
        self,
        key: Hashable,
        run: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        lock: AbstractContextManager[Any] | None = None,
    ) -> torch.Tensor:
        """`run(x)` for this caller, possibly computed inside one `run(cat(xs))` with other callers'.

        `key` names the model; callers whose inputs differ in shape, dtype or device never share a pass.
        `run` must treat rows independently (eval mode): a batch's rows are each caller's own answer.
        `lock` (the model's) is held around the pass; while the leader waits for it, callers that arrive
        join its batch, so under load each pass takes everything that queued during the previous one.
        """
        if self.max_jobs <= 1 or len(x) >= self.max_rows:  # off, or already a full batch by itself
            with lock or nullcontext():
                return run(x)
        key = (key, tuple(x.shape[1:]), x.dtype, x.device)
        req = _Request(x)
        with self._cond:
            self._inside += 1
            while True:
                pending = self._pending.get(key)
                if pending is None:
                    batch = self._pending[key] = [req]
                    break
                if len(pending) < self.max_jobs and _rows(pending) + len(x) <= self.max_rows:
                    pending.append(req)  # the leader gathering this key's batch runs ours too
                    self._cond.notify_all()
                    break
                self._cond.wait()  # that batch is full: join the next one once it is taken
        if pending is None:
            with lock or nullcontext():
                self._gather(key, batch)
                self._run(batch, run)
        req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.out is not None
        return req.out

    @property
    def inside(self) -> int:
        """Callers waiting in or for a pass right now."""
        return self._inside

    def _gather(self, key: Hashable, batch: list[_Request]) -> None:
        """Wait while some job in flight could still join (at most `wait_s` more), then close the batch.

        A job already inside another pass (another model, or this one's previous batch) cannot join:
        waiting for it would only stall both batches until the deadline.
        """
        with self._cond:
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_jobs and _rows(batch) < self.max_rows and self._active > self._inside:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            del self._pending[key]  # later callers start the next batch
            self._cond.notify_all()
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))

    def _run(self, batch: list[_Request], run: Callable[[torch.Tensor], torch.Tensor]) -> None:
        try:
            if len(batch) == 1:
                batch[0].out = run(batch[0].x)
            else:
                out = run(torch.cat([r.x for r in batch]))
                for r, part in zip(batch, out.split([len(r.x) for r in batch]), strict=True):
                    r.out = part
        except BaseException as exc:  # every caller sees the failure, none waits forever
            for r in batch:
                r.error = exc
        finally:
            with self._cond:  # its callers are free again: the next batch's leader may wait for them
                self._inside -= len(batch)
                self._cond.notify_all()
            for r in batch:
                r.done.set()


def _rows(batch: list[_Request]) -> int:
    return sum(len(r.x) for r in batch)


BATCHER = ForwardBatcher()
