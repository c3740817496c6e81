"""A worker gives the memory a finished job freed back to the OS (glibc keeps freed heap otherwise)."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from backend.jobs import worker
from backend.jobs.worker import release_memory


@pytest.fixture(autouse=True)
def thaw_after() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim and /proc are Linux's")
def test_release_memory_returns_freed_heap() -> None:
    # 200 MB in 2 KB blocks (malloc's heap, not mmap), then a live block above them so the heap's
    # top cannot shrink on its own: what a job's many small tensors leave behind.
    blocks = [bytes(2048) + bytes([i % 256]) for i in range(100_000)]
    sentinel = bytearray(4096)
    before_free = rss_mb()
    del blocks
    kept = rss_mb()
    release_memory()
    after = rss_mb()
    assert before_free - kept < 50, (before_free, kept)  # freed, but still resident
    assert kept - after > 150, (kept, after)  # handed back
    assert sentinel


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_survivors_are_frozen_and_garbage_cycles_are_still_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "THAW_EVERY_JOBS", 3)
    monkeypatch.setattr(worker, "_jobs_released", 0)
    release_memory()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the interpreter's long-lived objects: later collections skip them
    dead = cycle()  # garbage created by a later job
    release_memory()
    assert dead() is None
    # A cycle among frozen objects that becomes garbage later is freed at the next thaw.
    keep: list[Node] = []
    ref = cycle()
    node = ref()
    assert node is not None
    keep.append(node)
    del node
    release_memory()  # job 3: thaw, collect, freeze again (the cycle is still referenced)
    assert ref() is not None and gc.get_freeze_count() > 0
    keep.clear()
    release_memory()
    assert ref() is not None  # frozen: not scanned
    monkeypatch.setattr(worker, "_jobs_released", 2)
    release_memory()  # the next thaw
    assert ref() is None


def test_memory_is_released_after_a_job_that_grew_the_process_or_every_few_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released: list[int] = []
    sizes = iter([])

    monkeypatch.setattr(worker, "release_memory", lambda: released.append(1))
    monkeypatch.setattr(worker, "resident_bytes", lambda: next(sizes))
    keeper = worker.MemoryKeeper()
    mb = 1024 * 1024
    # (before, after) resident sizes of each job
    jobs = [(100 * mb, 101 * mb), (101 * mb, 300 * mb), (300 * mb, 300 * mb)]
    sizes = iter([size for job in jobs for size in job])
    for _ in jobs:
        keeper.job_started()
        keeper.job_ended()
    assert len(released) == 1  # only after the job that grew the process by 199 MB

    sizes = iter([100 * mb] * 2 * worker.RELEASE_EVERY_JOBS)
    for _ in range(worker.RELEASE_EVERY_JOBS):
        keeper.job_started()
        keeper.job_ended()
    assert len(released) == 2  # small jobs: once every RELEASE_EVERY_JOBS
