"""The sample-efficiency sweep writes its JSON, and the lab charts the shipped one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.labs.base import LabContext, get_lab
from backend.labs.sample_efficiency import load_sweep
from backend.train.sweep import run_sweep


def test_tiny_sweep_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "se.json"
    r = run_sweep([0.1, 1.0], seeds=1, steps=5, out=out, models=["cnn"], progress=False)
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(r))
    assert [run["fraction"] for run in data["runs"]] == [0.1, 1.0]
    assert data["runs"][0]["n_train"] < data["runs"][1]["n_train"]
    assert data["summary"]["cnn"]["n"] == [1, 1]


def test_lab_charts_the_shipped_sweep() -> None:
    try:
        data = load_sweep()
    except FileNotFoundError:
        pytest.skip("sample_efficiency.json not shipped")
    lab = get_lab("sample-efficiency")
    params = lab.Params()
    result = lab.run(LabContext(models=[], image=None), params)
    figs = lab.figures(result, params)
    assert len(figs) == 1 and len(figs[0]["data"]) == len(data["summary"])
    assert set(data["summary"]) <= {"convit", "deit", "cnn"}
    assert len(data["seeds"]) >= 2 and data["fractions"][0] == 0.05


def test_shipped_summary_is_the_mean_of_its_runs() -> None:
    # The chart's numbers must come from real runs: recompute every mean from the per-run records.
    try:
        data = load_sweep()
    except FileNotFoundError:
        pytest.skip("sample_efficiency.json not shipped")
    assert len(data["runs"]) == len(data["fractions"]) * len(data["seeds"]) * len(data["summary"])
    for model, s in data["summary"].items():
        for i, f in enumerate(data["fractions"]):
            accs = [r["test_accuracy"] for r in data["runs"] if r["model"] == model and r["fraction"] == f]
            assert len(accs) == len(data["seeds"])
            assert s["mean"][i] == pytest.approx(sum(accs) / len(accs))
    result = get_lab("sample-efficiency").run(
        LabContext(models=[], image=None), get_lab("sample-efficiency").Params()
    )
    assert result.metrics["cnn"]["1"] == pytest.approx(data["summary"]["cnn"]["mean"][-1])
