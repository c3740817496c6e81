"""Dynamic batching: concurrent jobs' forward passes through one model run as one batched pass, and each
caller gets exactly the rows it would have got alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import wait_until

from backend.data.examples import load_example
from backend.jobs.batching import BATCHER, ForwardBatcher
from backend.jobs.execute import MODELS, load_model, run_lab

Started = tuple[list[threading.Thread], list[object], list[BaseException]]


def _started(n: int, fn: Callable[[int], object]) -> Started:
    out: list[object] = [None] * n
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            out[i] = fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, out, errors


def _joined(started: Started) -> list[object]:
    threads, out, errors = started
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return out


def _concurrently(n: int, fn: Callable[[int], object]) -> list[object]:
    return _joined(_started(n, fn))


def _jobs_calling(batcher: ForwardBatcher, n: int, call: Callable[[int], torch.Tensor]) -> list[torch.Tensor]:
    """n jobs in flight at once (all inside `job()` before any forward), each making one call."""
    inside = threading.Barrier(n)

    def job(i: int) -> torch.Tensor:
        with batcher.job():
            inside.wait(10)
            return call(i)

    return _concurrently(n, job)  # type: ignore[return-value]


def test_concurrent_calls_share_one_pass_and_get_their_own_rows() -> None:
    model = load_model("cnn-shapes", "cpu").module
    xs = [torch.rand(1 + i % 3, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    batcher = ForwardBatcher(max_jobs=8, wait_s=30.0)  # waits until every job in flight has joined
    calls: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        with torch.no_grad():
            return model(x)

    outs = _jobs_calling(batcher, 6, lambda i: batcher.forward("cnn", run, xs[i]))
    assert calls == [sum(len(x) for x in xs)]  # one pass over every caller's rows
    assert (batcher.stats.batches, batcher.stats.requests, batcher.stats.largest) == (1, 6, 6)
    with torch.no_grad():
        for x, out in zip(xs, outs, strict=True):
            torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)


def test_a_lone_job_does_not_wait_and_batches_respect_their_limits() -> None:
    batcher = ForwardBatcher(max_jobs=2, wait_s=30.0)
    double = lambda x: 2 * x  # noqa: E731
    with batcher.job():
        start = time.monotonic()
        torch.testing.assert_close(batcher.forward("m", double, torch.ones(1, 2)), 2 * torch.ones(1, 2))
        assert time.monotonic() - start < 10  # not the 30 s gathering window: nobody else could join
    outs = _jobs_calling(batcher, 4, lambda i: batcher.forward("m", double, torch.full((1, 2), float(i))))
    assert [o.tolist() for o in outs] == [[[2.0 * i] * 2] for i in range(4)]
    assert batcher.stats.largest <= 2 and batcher.stats.batches >= 3  # the lone call, then ≥ 2 of ≤ 2


def test_inputs_of_other_shapes_or_models_never_share_a_pass() -> None:
    batcher = ForwardBatcher(max_jobs=8, wait_s=0.2)
    seen: list[tuple[int, ...]] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x.sum(dim=tuple(range(1, x.dim())))

    shapes = [(1, 4), (1, 4), (1, 5), (1, 4)]
    keys = ["a", "a", "a", "b"]
    outs = _jobs_calling(batcher, 4, lambda i: batcher.forward(keys[i], run, torch.ones(shapes[i])))
    assert [o.tolist() for o in outs] == [[4.0], [4.0], [5.0], [4.0]]
    assert sorted(seen) == [(1, 4), (1, 5), (2, 4)]  # only the two "a" callers of shape (·, 4) merged


def test_a_failing_pass_fails_every_caller_and_nobody_hangs() -> None:
    batcher = ForwardBatcher(max_jobs=8, wait_s=30.0)

    def run(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")

    def call(i: int) -> str:
        with pytest.raises(RuntimeError, match="out of memory"):
            batcher.forward("m", run, torch.ones(1, 3))
        return "raised"

    assert _jobs_calling(batcher, 3, call) == ["raised"] * 3  # type: ignore[comparison-overlap]


def test_concurrent_predict_jobs_share_passes_and_answer_as_alone() -> None:
    """The real path: predict jobs in four threads, as four worker threads of one process run them."""
    models = ["cnn-shapes", "deit-shapes"]
    images = [load_example(n) for n in ("shapes-circle", "shapes-star", "shapes-cross", "shapes-ring")]
    alone = [run_lab("predict", models, im, {})["metrics"] for im in images]
    saved = BATCHER.max_jobs, BATCHER.wait_s
    BATCHER.configure(8, 30.0)  # a pass waits while any job in flight could still join it
    BATCHER.stats.__init__()  # type: ignore[misc]
    lock = MODELS.get(models[0], "cpu")[1]
    try:
        with lock:  # the first model is busy until all four jobs wait for it (as under load)
            threads = _started(4, lambda i: run_lab("predict", models, images[i], {})["metrics"])
            wait_until(lambda: BATCHER.inside == 4, 60, what="four jobs waiting for the first model")
        together = _joined(threads)
    finally:
        BATCHER.configure(*saved)
    assert BATCHER.stats.largest == 4 and BATCHER.stats.batches == len(models)
    for a, b in zip(alone, together, strict=True):
        for m in models:
            assert b[m]["top1"] == a[m]["top1"]  # type: ignore[index]
            assert np.isclose(b[m]["confidence"], a[m]["confidence"], atol=1e-5)  # type: ignore[index]
