"""Section 6: dynamic batching (backend/jobs/batching.py), its ceiling and its gain on whole jobs.

- Ceiling: per zoo model, N single-image forward passes against one pass over the same N images.
- Gain: N concurrent predict jobs (one thread each, as N worker threads of one process run them, each on
  its own image) with batching off and on, rounds interleaved; jobs per second and the mean batch size.
"""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import torch
from PIL import Image

from backend.bench.compute import FAMILY_MODELS
from backend.bench.timing import interleaved, median
from backend.jobs.batching import BATCHER
from backend.jobs.execute import load_model, run_lab
from backend.labs import get_lab

CONCURRENT_JOBS = 8


def forward_ceiling(repeats: int, n: int = CONCURRENT_JOBS) -> list[dict[str, Any]]:
    rows = []
    for family in ("cnn", "convit", "vit", "mixer"):
        name = FAMILY_MODELS[family]
        model = load_model(name, "cpu").module
        x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))

        def singles(model: torch.nn.Module = model, x: torch.Tensor = x) -> None:
            with torch.no_grad():
                for i in range(len(x)):
                    model(x[i : i + 1])

        def batched(model: torch.nn.Module = model, x: torch.Tensor = x) -> None:
            with torch.no_grad():
                model(x)

        times = interleaved({"singles": singles, "batch": batched}, repeats)
        rows.append(
            {
                "family": family,
                "model": name,
                "images": n,
                "singles_ms": 1000 * median(times["singles"]),
                "batch_ms": 1000 * median(times["batch"]),
                "gain": median(times["singles"]) / median(times["batch"]),
            }
        )
    return rows


def job_gain(rounds: int, n: int = CONCURRENT_JOBS) -> dict[str, Any]:
    from backend.bench.service import student_images

    models = list(get_lab("predict").default_models)
    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in student_images(n)]
    saved = BATCHER.max_jobs, BATCHER.wait_s
    sides: dict[str, list[float]] = {"off": [], "on": []}
    sizes: list[float] = []

    def burst(max_jobs: int) -> float:
        BATCHER.configure(max_jobs, saved[1])
        before = (BATCHER.stats.batches, BATCHER.stats.requests)
        threads = [threading.Thread(target=run_lab, args=("predict", models, im, {})) for im in images]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        if max_jobs > 1:
            batches = BATCHER.stats.batches - before[0]
            sizes.append((BATCHER.stats.requests - before[1]) / max(batches, 1))
        return elapsed

    try:
        burst(1)  # warm: models, the OOD reference, first-call caches
        for i in range(rounds):
            for side in ("off", "on") if i % 2 == 0 else ("on", "off"):
                sides[side].append(burst(1 if side == "off" else max(saved[0], 2)))
    finally:
        BATCHER.configure(*saved)
    off, on = median(sides["off"]), median(sides["on"])
    return {
        "lab": f"predict on {', '.join(models)}",
        "concurrent_jobs": n,
        "rounds": rounds,
        "max_jobs": max(saved[0], 2),
        "wait_ms": 1000 * saved[1],
        "off_jobs_per_s": n / off,
        "on_jobs_per_s": n / on,
        "gain": off / on,
        "mean_batch": median(sizes),
    }
