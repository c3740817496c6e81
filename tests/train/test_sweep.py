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
