"""A worker gives the memory a finished job freed back to the OS (glibc keeps freed heap otherwise)."""

from __future__ import annotations

import sys

import pytest

from backend.jobs.worker import release_memory


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
