"""`biaslab bench --quick` for one iteration, so the benchmark suite cannot rot: real `biaslab serve`,
redis-server and `biaslab worker` processes on loopback, a tiny class, every section checked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, need_binary

pytestmark = pytest.mark.redis


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    need_binary("redis-server", "the bench starts a real Redis")
    out = tmp_path / "bench"
    args = ["bench", "--quick", "--iterations", "1", "--students", "2", "--workers", "1", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the bench stops the servers and workers it started
        _, stderr = proc.communicate(timeout=60)
        pytest.fail(f"bench did not finish in 600 s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    res = json.loads((out / "results.json").read_text())

    labs = {(r["lab"], r["family"]) for r in res["lab_vs_bare"]}
    # predict and IG for every family, attention for the attention models, GradCAM where a layer exists
    assert {("predict", f) for f in ("cnn", "vit", "convit", "mixer", "mlp")} <= labs
    assert {("attention", "vit"), ("attention", "convit"), ("gradcam", "cnn"), ("ig", "mlp")} <= labs
    assert ("gradcam", "mlp") not in labs
    for r in res["lab_vs_bare"]:
        assert _positive(r["compute_ratio"]) and _positive(r["bare_ms"])
        if r["lab"] in ("predict", "attention"):  # the whole job, on a new image and on the same one again
            assert _positive(r["job_ratio"]) and _positive(r["rerun_ratio"])
    assert _positive(res["threads"]["ratio"])

    cams = res["gradcam_vs_library"]
    assert any("224" in r["model"] for r in cams) and len(cams) >= 5
    for r in cams:
        assert _positive(r["ratio"])
        # Independent check: our map is pytorch-grad-cam's map (both ReLU(Σ α_k A^k), upsampled).
        assert r["map_correlation"] > 0.99, r

    for mode in ("embedded", "redis"):
        r = res["service_overhead"][mode]
        assert _positive(r["ratio"]) and _positive(r["http_p50_ms"]) and r["server_errors"] == 0
    assert all(p["response_bytes"] > sum(p["figure_bytes"]) > 0 for p in res["payloads"])
    b = res["browser"]  # Chromium is installed here, so the browser figure must be measured
    assert b["samples"] == 1 and b["run_to_figure_max_s"] >= b["run_to_figure_p50_s"] > 0
    assert _positive(b["http_p50_s"]) and b["models"]  # the same job over HTTP, beside it

    load = res["class_load"]
    assert [r["workers"] for r in load] == [1]
    assert [r["students"] for r in res["class_load_embedded"]] == [2]  # the one-command server too
    for r in load + res["class_load_embedded"]:  # every student's two jobs finished, none refused or failed
        assert r["jobs_done"] == 2 * r["students"] and r["failed_students"] == 0 and r["server_errors"] == 0
        assert _positive(r["jobs_per_s"])
    assert all(_positive(r["scaling_efficiency"]) for r in load)
    assert load[0]["scaling_efficiency"] == pytest.approx(1.0)

    s, z = res["startup"], res["zoo_rss"]
    assert 0 < s["healthy_s"] < s["first_job_s"] and _positive(s["import_torch_s"])
    assert z["peak_rss_mb"] >= z["rss_after_import_mb"] >= z["rss_torch_only_mb"] > 0
    assert "cnn-shapes" in z["models"]

    b = res["batching"]
    assert {r["family"] for r in b["forward_ceiling"]} == {"cnn", "convit", "vit", "mixer"}
    assert all(_positive(r["gain"]) for r in b["forward_ceiling"])
    # Eight concurrent jobs with batching on did share passes: more than one call per pass on average.
    assert _positive(b["jobs"]["gain"]) and b["jobs"]["mean_batch"] > 1

    md = (out / "RESULTS.md").read_text()
    for heading in ("## Targets", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6."):
        assert heading in md
    for r in cams:  # the table shows the measured figures, not placeholders
        assert f"{r['ratio']:.2f}×" in md
