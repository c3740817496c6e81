"""`biaslab bench`: every figure a ratio of two sides measured interleaved in one run (see timing.py).

1. Lab time against the bare computation it cannot avoid (compute.py).
2. Our GradCAM against pytorch-grad-cam on the same models and inputs (compute.py).
3. Service overhead: a job over HTTP against the same lab in-process, embedded and with Redis (service.py),
   and in the browser from Run to the figure drawn (browser.py).
4. A class of simulated students with 1, 2 and 4 Redis workers, and on the embedded server (service.py).
5. Start-up to the first answered job, and peak RSS with the whole zoo loaded (service.py, rss.py).
6. Dynamic batching: its ceiling on forward passes, and its gain on concurrent jobs (batching.py).

Results go to `<out>/results.json` and `<out>/RESULTS.md` (report.py).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    repeats: int = 7  # timed calls per side in sections 1-2
    overhead_samples: int = 60  # HTTP/in-process pairs per queue mode in section 3
    students: tuple[int, ...] = (30, 100)
    workers: tuple[int, ...] = (1, 2, 4)
    timm_models: tuple[str, ...] = ("resnet18", "vit_tiny_patch16_224")
    threads: int | None = None  # torch intra-op threads here and in the servers and workers; None: torch's

    @classmethod
    def make(
        cls,
        quick: bool,
        iterations: int | None = None,
        students: tuple[int, ...] | None = None,
        workers: tuple[int, ...] | None = None,
        threads: int | None = None,
    ) -> BenchConfig:
        # Quick: 1 and 2 workers (as many as this 2-core machine has); 4 workers cost half a minute of
        # process start-up for a row that only shows over-subscription.
        base = cls(True, 3, 15, (30,), (1, 2), ("resnet18",)) if quick else cls()
        return cls(
            quick,
            iterations or base.repeats,
            iterations or base.overhead_samples,
            students or base.students,
            workers or base.workers,
            base.timm_models,
            threads,
        )


def run_bench(config: BenchConfig, out: Path, log: Any = print) -> dict[str, Any]:
    import torch

    from backend.bench import batching, browser, compute, service
    from backend.bench.procs import Processes
    from backend.bench.report import render
    from backend.bench.timing import machine_info

    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    results: dict[str, Any] = {"machine": machine_info(), "config": asdict(config)}
    out.mkdir(parents=True, exist_ok=True)

    sections: dict[str, float] = {}
    results["section_s"] = sections
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        sections[name] = round(now - mark, 1)
        mark = now

    log("1/6 lab time against the bare computation")
    results["lab_vs_bare"] = compute.lab_vs_bare(config.repeats)
    results["threads"] = compute.thread_ratio(config.repeats)
    lap("lab_vs_bare")
    log("2/6 GradCAM against pytorch-grad-cam")
    results["gradcam_vs_library"] = compute.gradcam_vs_library(config.repeats, config.timm_models)
    lap("gradcam")

    with tempfile.TemporaryDirectory(prefix="biaslab-bench-") as tmp:
        env = {"OMP_NUM_THREADS": str(config.threads)} if config.threads else {}
        # An empty cache, so start-up is what a new deployment sees (its first image job fits the
        # out-of-distribution reference), whatever this machine ran before; later processes read it.
        env["BIASLAB_CACHE_DIR"] = str(Path(tmp) / "cache")
        procs = Processes(Path(tmp), env)
        try:
            log("5/6 start-up of an embedded `biaslab serve`")
            floor = service.timed_import_floor()
            url, proc, startup = service.start_embedded(procs)
            results["startup"] = {**startup, "import_torch_s": floor}
            lap("startup")
            log("3/6 service overhead, embedded queue")
            overhead = {"embedded": service.service_overhead(url, config.overhead_samples)}
            results["payloads"] = service.payload_sizes(url)
            log("3/6 in the browser: Run to the figure drawn")
            results["browser"] = browser.run_to_figure(url, config.repeats)
            lap("embedded_overhead")
            # The server a teacher starts with one command (`make serve`: embedded queue, one worker
            # thread) under the same class as the Redis rows below.
            images = service.student_images(max(config.students))
            service.warm_workers(url, 1, images)
            embedded_rows = []
            for students in config.students:
                log(f"4/6 class load: {students} students, embedded `biaslab serve`")
                embedded_rows.append({"workers": 1, **service.class_load(url, students, images)})
            results["class_load_embedded"] = embedded_rows
            procs.stop(proc)
            lap("class_load_embedded")

            log("3/6 service overhead, Redis with `biaslab worker` processes")
            redis_url = procs.redis()
            url, proc = procs.serve(["--redis", redis_url, "--workers", "0"], "serve-redis.log")
            workers_started = 0
            load_rows = []
            for n in sorted(set(config.workers) | {1}):
                for i in range(workers_started, n):
                    procs.biaslab(["worker", "--redis", redis_url], f"worker{i}.log")
                workers_started = n
                procs.wait_healthy(url, proc, "serve-redis.log", workers=n)
                service.warm_workers(url, n, images)
                if n == 1:
                    overhead["redis"] = service.service_overhead(url, config.overhead_samples)
                    lap("redis_overhead")
                if n not in config.workers:
                    continue
                for students in config.students:
                    log(f"4/6 class load: {students} students, {n} worker(s)")
                    load_rows.append({"workers": n, **service.class_load(url, students, images)})
                lap(f"class_load_{n}_workers")
            results["service_overhead"] = overhead
            results["class_load"] = _with_efficiency(load_rows)
            results["process_peak_rss_mb"] = service.process_peaks(procs)
        finally:
            procs.close()
    results["zoo_rss"] = service.zoo_peak_rss()
    lap("zoo_rss")
    log("6/6 dynamic batching")
    results["batching"] = {
        "forward_ceiling": batching.forward_ceiling(config.repeats),
        "jobs": batching.job_gain(config.repeats),
    }
    lap("batching")
    results["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    results["wall_s"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "RESULTS.md").write_text(render(results))
    return results


def _with_efficiency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scaling efficiency: jobs/s with N workers over N × jobs/s with one, for the same class size."""
    single = {r["students"]: r["jobs_per_s"] for r in rows if r["workers"] == 1}
    for r in rows:
        one = single.get(r["students"])
        r["scaling_efficiency"] = r["jobs_per_s"] / (r["workers"] * one) if one else None
        r["speedup"] = r["jobs_per_s"] / one if one else None
    return rows
