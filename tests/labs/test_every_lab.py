"""Every registered lab, on its default models, gives the same answer through `run_lab`, the HTTP API
and `biaslab run` (as timm's tests loop over its registry)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.cli import main as cli_main
from backend.config import Settings
from backend.data.examples import load_example
from backend.jobs.execute import run_lab
from backend.labs import Lab, list_labs
from backend.main import create_app

EXAMPLE = "shapes-circle"
LABS = [lab for lab in list_labs() if not lab.name.startswith("toy-")]  # the test plugin has its own tests
# Every lab runs at its defaults here except attribution, whose default sanity check (6 probe images ×
# 5 seeds) took 50 s per run and this test runs it three times: its every path (both randomisations,
# IG with expected gradients) still runs, on fewer images, seeds, steps and references. Its defaults
# run in tests/labs/test_attention_gating_attribution_labs.py (test_lab_on_the_shipped_zoo).
PARAMS: dict[str, dict[str, Any]] = {
    "attribution": {"probe_size": 1, "seeds": 2, "ig_steps": 8, "references": 2}
}


def inputs(lab: Lab) -> dict[str, Any]:
    text = lab.text_input.suggestions[0] if lab.text_input and lab.text_input.suggestions else None
    return {"text": text}


def assert_same_metrics(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same_metrics(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_metrics(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-6, nan_ok=True), where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), mount_ui=False)) as c:
        yield c


@pytest.fixture(scope="module")
def direct() -> dict[str, dict[str, Any]]:
    return {
        lab.name: run_lab(
            lab.name,
            list(lab.default_models),
            load_example(EXAMPLE) if lab.needs_image else None,
            PARAMS.get(lab.name, {}),
            **inputs(lab),
        )
        for lab in LABS
    }


def test_every_lab_has_defaults_that_run() -> None:
    assert {"predict", "attention", "gating", "attribution", "sample-efficiency"} <= {
        lab.name for lab in LABS
    }
    for lab in LABS:
        assert len(lab.default_models) <= lab.max_models, lab.name


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_run_lab_api_and_cli_agree(
    lab: Lab, direct: dict[str, dict[str, Any]], client: TestClient, tmp_path: Path
) -> None:
    expected = direct[lab.name]
    assert expected["figures"], lab.name
    for fig in expected["figures"]:
        assert fig["data"], f"{lab.name}: an empty figure"

    params = PARAMS.get(lab.name, {})
    body = {"lab": lab.name, "models": list(lab.default_models), "params": params, **inputs(lab)}
    if lab.needs_image:
        body["image_id"] = f"example-{EXAMPLE}"
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 300
    while (view := client.get(f"/api/jobs/{r.json()['id']}").json())["status"] not in ("finished", "failed"):
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    assert view["status"] == "finished", view["error"]
    assert_same_metrics(expected["metrics"], view["result"]["metrics"], f"{lab.name} api")
    assert len(view["result"]["figures"]) == len(expected["figures"])

    args = ["run", lab.name, "--out", str(tmp_path / "out")]
    args += [f"--param={k}={v}" for k, v in params.items()]
    if lab.needs_image:
        load_example(EXAMPLE).save(image := tmp_path / "in.png")
        args += ["--image", str(image)]
    if inputs(lab)["text"]:
        args += ["--text", inputs(lab)["text"]]
    assert cli_main(args) == 0
    written = json.loads((tmp_path / "out" / f"{lab.name}-metrics.json").read_text())
    assert_same_metrics(expected["metrics"], written["metrics"], f"{lab.name} cli")
    assert len(list((tmp_path / "out").glob(f"{lab.name}-*.html"))) == len(expected["figures"])
