"""results.json -> RESULTS.md: one table per section, each target stated and judged as measured."""

from __future__ import annotations

import statistics
from typing import Any

LAB_TARGET = 1.3  # lab time / bare computation, at the median
OVERHEAD_P50_MS, OVERHEAD_P99_MS = 15.0, 50.0


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


LOAD_COLUMNS = ["students", "jobs done", "wall s", "jobs/s", "p50 s", "p95 s"]


def _load_cells(r: dict[str, Any]) -> list[str]:
    """The LOAD_COLUMNS of one class-load row."""
    return [
        str(r["students"]),
        str(r["jobs_done"]),
        _f(r["wall_s"], 1),
        _f(r["jobs_per_s"], 2),
        _f(r["latency_p50_s"], 2),
        _f(r["latency_p95_s"], 2),
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every target of the issue."""
    out: list[tuple[str, str, bool | None]] = []
    rows = res["lab_vs_bare"]
    for key, what in (("compute_ratio", "lab.run"), ("job_ratio", "whole job (run_lab, a new image)")):
        vals = [r[key] for r in rows if key in r]
        med = statistics.median(vals)
        worst = max(rows, key=lambda r: r.get(key, 0))
        out.append(
            (
                f"{what} / bare computation ≤ {LAB_TARGET}× at the median",
                f"median over {len(vals)} lab×family rows {med:.2f}×; worst {worst[key]:.2f}× "
                f"({worst['lab']}, {worst['family']}); "
                f"{sum(v <= LAB_TARGET for v in vals)}/{len(vals)} rows ≤ {LAB_TARGET}×",
                med <= LAB_TARGET,
            )
        )
    cams = res["gradcam_vs_library"]
    worst_cam = max(cams, key=lambda r: r["ratio"])
    out.append(
        (
            "our GradCAM faster than pytorch-grad-cam on every model",
            f"{sum(r['ratio'] < 1 for r in cams)}/{len(cams)} models faster; slowest ratio "
            f"{worst_cam['ratio']:.2f}× ({worst_cam['model']})",
            all(r["ratio"] < 1 for r in cams),
        )
    )
    for mode, r in res["service_overhead"].items():
        out.append(
            (
                f"service overhead ({mode}) p50 ≤ {OVERHEAD_P50_MS:g} ms, p99 ≤ {OVERHEAD_P99_MS:g} ms",
                f"p50 {r['overhead_p50_ms']:.1f} ms, p99 {r['overhead_p99_ms']:.1f} ms "
                f"({r['samples']} pairs)",
                r["overhead_p50_ms"] <= OVERHEAD_P50_MS and r["overhead_p99_ms"] <= OVERHEAD_P99_MS,
            )
        )
    b = res.get("batching")
    if b:
        j = b["jobs"]
        out.append(
            (
                "dynamic batching: concurrent jobs for the same lab and models share one pass "
                "(throughput gain reported, no target)",
                f"{j['concurrent_jobs']} concurrent {j['lab']} jobs: {j['off_jobs_per_s']:.2f} → "
                f"{j['on_jobs_per_s']:.2f} jobs/s ({j['gain']:.2f}×), mean batch {j['mean_batch']:.1f}",
                None,
            )
        )
    return out


def render(res: dict[str, Any]) -> str:
    m, cfg = res["machine"], res["config"]
    lines = [
        "# Benchmark results",
        "",
        "Every figure is a ratio of two sides measured interleaved in this one run (medians), because "
        "absolute times drift on a shared machine. Written by `biaslab bench"
        + (" --quick" if cfg["quick"] else "")
        + "` (backend/bench/).",
        "",
        f"- Date (UTC): {m['date']}; wall time of the run: {res['wall_s']:.0f} s",
        f"- Machine: {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}",
        f"- torch {m['torch']} on {m['device']}, {m['torch_threads']} intra-op threads",
        f"- Load average (1, 5, 15 min) at start {m['loadavg_start']}, at end {m.get('loadavg_end')}: "
        f"a load above {m['cpu_count']} means other processes shared these CPUs during the run",
        f"- Wall time per section (s): {res.get('section_s')}",
        f"- Settings: threads {cfg.get('threads') or 'torch default'}, "
        f"{cfg['repeats']} timed calls per side (sections 1–2), {cfg['overhead_samples']} "
        f"pairs per queue mode (section 3), students {cfg['students']}, workers {cfg['workers']}",
        "",
        "## Targets",
        "",
    ]
    lines += _table(["target", "measured", "result"], [[t, v, _met(ok)] for t, v, ok in targets(res)])

    lines += ["## 1. Lab time against the bare computation it cannot avoid", ""]
    lines += [
        "`lab.run` is the lab's compute alone; the whole job is `run_lab` as a worker runs it (validation, "
        "lab.run, Plotly figures, the out-of-distribution check) on a new image every call, as a first run; "
        "a re-run is the same job on the same image, as a change of settings is, whose out-of-distribution "
        "score is kept from the first. Target ≤ 1.3×.",
        "",
    ]
    rows = [
        [
            r["lab"],
            r["family"],
            r["model"],
            r["bare_is"],
            _f(r["bare_ms"], 1),
            _f(r["compute_ms"], 1),
            f"{r['compute_ratio']:.2f}×",
            _met(r["compute_ratio"] <= LAB_TARGET),
            _f(r.get("job_ms"), 1),
            f"{r['job_ratio']:.2f}×" if "job_ratio" in r else "–",
            _met(r["job_ratio"] <= LAB_TARGET) if "job_ratio" in r else "n/a",
            _f(r.get("rerun_ms"), 1),
            f"{r['rerun_ratio']:.2f}×" if "rerun_ratio" in r else "–",
        ]
        for r in res["lab_vs_bare"]
    ]
    lines += _table(
        [
            "lab",
            "family",
            "model",
            "bare computation",
            "bare ms",
            "lab.run ms",
            "ratio",
            "≤ 1.3×",
            "whole job ms",
            "job ratio",
            "≤ 1.3×",
            "re-run ms",
            "re-run ratio",
        ],
        rows,
    )
    t = res["threads"]
    lines += [
        f"Threads: one forward of {t['model']} with {t['threads']} threads (torch's default, one per CPU) "
        "takes "
        f"{t['default_ms']:.1f} ms against {t['one_thread_ms']:.1f} ms with one thread "
        f"(ratio {t['ratio']:.2f}×).",
        "",
    ]

    lines += ["## 2. Our GradCAM against pytorch-grad-cam", ""]
    lines += [
        "Same model, layer, input and class; both upsample to the input size. `map r` is the Pearson "
        "correlation of the two maps (1 = the same map). Target: faster on every model (ratio < 1).",
        "",
    ]
    lines += _table(
        ["model", "layer", "ours ms", "pytorch-grad-cam ms", "ratio", "map r", "faster"],
        [
            [
                r["model"],
                f"`{r['layer']}`",
                _f(r["ours_ms"], 1),
                _f(r["lib_ms"], 1),
                f"{r['ratio']:.2f}×",
                _f(r["map_correlation"], 4),
                _met(r["ratio"] < 1),
            ]
            for r in res["gradcam_vs_library"]
        ],
    )

    lines += ["## 3. Service overhead on loopback", ""]
    lines += [
        "`POST /api/jobs`, then one `GET /api/jobs/{id}?wait=30`, which the API answers the moment the "
        "job ends, against the same `run_lab` in this process, interleaved; overhead = HTTP − in-process "
        "per pair. Targets p50 ≤ 15 ms, p99 ≤ 50 ms. The UI asks with `wait=0.3` until the job ends.",
        "",
    ]
    lines += _table(
        [
            "queue",
            "lab",
            "HTTP p50 ms",
            "in-process p50 ms",
            "ratio",
            "overhead p50 ms",
            "overhead p99 ms",
            "met",
        ],
        [
            [
                mode,
                r["lab"],
                _f(r["http_p50_ms"], 1),
                _f(r["inprocess_p50_ms"], 1),
                f"{r['ratio']:.2f}×",
                _f(r["overhead_p50_ms"], 1),
                _f(r["overhead_p99_ms"], 1),
                _met(r["overhead_p50_ms"] <= OVERHEAD_P50_MS and r["overhead_p99_ms"] <= OVERHEAD_P99_MS),
            ]
            for mode, r in res["service_overhead"].items()
        ],
    )
    b = res.get("browser") or {}
    if "run_to_figure_p50_s" in b:
        lines += [
            f"In the browser (headless Chromium, embedded server, {b['lab']} on {', '.join(b['models'])}): "
            f"from the click on Run to the new chart drawn, p50 {b['run_to_figure_p50_s']:.2f} s, max "
            f"{b['run_to_figure_max_s']:.2f} s ({b['samples']} runs), against p50 {b['http_p50_s']:.2f} s "
            "for the same job over HTTP, interleaved: the rest is Gradio's round trips (the click, the "
            "result update, in which Gradio rebuilds every output the Run event names) and Plotly "
            "drawing.",
            "",
        ]
    elif b:
        lines += [f"In the browser: not measured ({b['skipped']}).", ""]
    lines += ["Payload of a finished job (the JSON the browser downloads):", ""]
    lines += _table(
        ["lab", "models", "params", "response bytes", "figures", "bytes per figure"],
        [
            [
                p["lab"],
                ", ".join(p["models"]),
                f"`{p['params']}`" if p["params"] else "defaults",
                f"{p['response_bytes']:,}",
                str(p["figures"]),
                ", ".join(f"{b:,}" for b in p["figure_bytes"]),
            ]
            for p in res["payloads"]
        ],
    )

    lines += ["## 4. A class of students", ""]
    lines += [
        "Every student starts at once, uploads their own `shapes` test image, then runs attention "
        "(convit-shapes, probe_size 0) and attribution (cnn-shapes, ig_steps 4, 1 reference, no sanity "
        "check), asking for each job's state as the UI does; each student is its own client "
        "(X-Forwarded-For) for the rate limit. Redis queue, `biaslab worker` processes. Scaling "
        "efficiency = jobs/s ÷ (workers × jobs/s of one worker).",
        "",
    ]
    lines += _table(
        [
            "workers",
            *LOAD_COLUMNS,
            "speed-up",
            "efficiency",
            "429s",
            "5xx",
            "failed students",
        ],
        [
            [
                str(r["workers"]),
                *_load_cells(r),
                f"{r['speedup']:.2f}×" if r["speedup"] else "–",
                _f(r["scaling_efficiency"], 2),
                str(r["rejected_429"]),
                str(r["server_errors"]),
                str(r["failed_students"]),
            ]
            for r in res["class_load"]
        ],
    )
    embedded = res.get("class_load_embedded") or []
    redis_one = {r["students"]: r for r in res["class_load"] if r["workers"] == 1}
    lines += [
        "The same class on the one-command server (`biaslab serve`: embedded queue, one worker thread "
        "in the API's process), against the Redis queue with one `biaslab worker`, in this run:",
        "",
    ]
    lines += _table(
        [
            *LOAD_COLUMNS,
            "jobs/s ÷ Redis, 1 worker",
            "429s",
            "5xx",
        ],
        [
            [
                *_load_cells(r),
                f"{r['jobs_per_s'] / redis_one[r['students']]['jobs_per_s']:.2f}×"
                if r["students"] in redis_one
                else "–",
                str(r["rejected_429"]),
                str(r["server_errors"]),
            ]
            for r in embedded
        ],
    )

    s, z = res["startup"], res["zoo_rss"]
    lines += ["## 5. Start-up and memory", ""]
    lines += _table(
        ["figure", "ours", "floor", "ratio"],
        [
            [
                "`biaslab serve` to healthy (s)",
                _f(s["healthy_s"], 1),
                f"{s['import_torch_s']:.1f} (`python -c 'import torch'`)",
                f"{s['healthy_s'] / s['import_torch_s']:.2f}×",
            ],
            [
                "`biaslab serve` to the first answered job, empty cache: the job fits the OOD reference (s)",
                _f(s["first_job_s"], 1),
                f"{s['import_torch_s']:.1f} (`python -c 'import torch'`)",
                f"{s['first_job_s'] / s['import_torch_s']:.2f}×",
            ],
            [
                f"peak RSS, whole shipped zoo loaded and run once ({len(z['models'])} models, "
                f"{z['parameters']:,} parameters) (MB)",
                _f(z["peak_rss_mb"], 0),
                f"{z['rss_torch_only_mb']:.0f} (torch imported)",
                f"{z['peak_rss_mb'] / z['rss_torch_only_mb']:.2f}×",
            ],
            [
                "RSS after importing the backend, before any model (MB)",
                _f(z["rss_after_import_mb"], 0),
                f"{z['rss_torch_only_mb']:.0f} (torch imported)",
                f"{z['rss_after_import_mb'] / z['rss_torch_only_mb']:.2f}×",
            ],
        ],
    )
    peaks = res.get("process_peak_rss_mb") or {}
    if peaks:
        lines += [
            "Peak RSS of the Redis-mode processes after the class load (MB): "
            + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()),
            "",
        ]
    if "batching" in res:
        lines += _batching(res["batching"])
    return "\n".join(lines)


def _batching(b: dict[str, Any]) -> list[str]:
    j = b["jobs"]
    lines = ["## 6. Dynamic batching", ""]
    lines += [
        "Ceiling: single-image forward passes against one pass over the same images (no queue, no "
        "figures). Jobs: concurrent predict jobs in one worker process, one thread each (as "
        "`biaslab serve --workers N` or `biaslab worker --threads N` run them), each on its own image, "
        f"with batching off and on (up to {j['max_jobs']} jobs, {j['wait_ms']:.0f} ms), rounds interleaved.",
        "",
    ]
    lines += _table(
        ["model", "images", "one at a time ms", "one batch ms", "ceiling"],
        [
            [r["model"], str(r["images"]), _f(r["singles_ms"], 1), _f(r["batch_ms"], 1), f"{r['gain']:.2f}×"]
            for r in b["forward_ceiling"]
        ],
    )
    lines += _table(
        ["lab", "concurrent jobs", "rounds", "jobs/s off", "jobs/s on", "gain", "mean batch"],
        [
            [
                j["lab"],
                str(j["concurrent_jobs"]),
                str(j["rounds"]),
                _f(j["off_jobs_per_s"]),
                _f(j["on_jobs_per_s"]),
                f"{j['gain']:.2f}×",
                _f(j["mean_batch"], 1),
            ]
        ],
    )
    return lines
