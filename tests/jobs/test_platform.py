"""The platform contract, through a plugin (tests/toy_plugin.py) that adds a computed-from-data model
and a lab with a text input and partial results, as a researcher would:

- in process (`run_lab`), over HTTP from a live `biaslab serve`, and from `biaslab run`;
- one Settings end to end: a worker started with --device runs its jobs there and says so in
  /api/health, whatever the environment says; an absent CUDA is a one-line error at start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import toy_plugin
from conftest import REPO, RedisServer, free_port, need_binary, start_biaslab, wait_healthy, wait_until

from backend.data import load_dataset
from backend.jobs.execute import MODELS, run_lab
from backend.jobs.validate import JobRequestError, validate_job

TESTS = Path(__file__).resolve().parent.parent
PLUGIN_ENV = {
    "BIASLAB_PLUGINS": json.dumps(["toy_plugin"]),
    "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
}
QUESTION = "is there a red cube"


def test_computed_model_is_built_once_with_progress_and_partials_arrive_in_order() -> None:
    MODELS.clear()
    messages: list[str] = []
    partials: list[dict[str, Any]] = []
    result = run_lab(
        toy_plugin.TOY_LAB,
        [toy_plugin.TOY_MODEL],
        None,
        {"delay_s": 0},
        text=QUESTION,
        progress=lambda f, m="": messages.append(m),
        publish=partials.append,
    )
    # The model was computed from its dataset: the mean of the first 64 training digits.
    expected = load_dataset("digits", "train", n=toy_plugin.MEAN_OF, seed=0).tensors()[0].mean().item()
    assert result["metrics"]["model_mean"] == pytest.approx(expected, rel=1e-6)
    assert any(m.startswith(f"building {toy_plugin.TOY_MODEL}: averaging") for m in messages)
    # Three partial results, each drawn by the lab's own figures, then the final one.
    assert [p["step"] for p in partials] == [1, 2, 3]
    assert [p["text"] for p in partials] == ["is", "is there", "is there a"]
    assert [len(p["figures"]) for p in partials] == [1, 2, 3]  # one chart per word so far
    assert partials[-1]["figures"][1]["data"][0]["x"] == list("there")
    assert result["metrics"]["device"] == "cpu"
    # Cached per worker: a second job does not compute it again.
    messages.clear()
    run_lab(
        toy_plugin.TOY_LAB,
        [toy_plugin.TOY_MODEL],
        None,
        {"delay_s": 0},
        text="again",
        progress=lambda f, m="": messages.append(m),
    )
    assert not any("averaging" in m for m in messages)


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"lab_name": "nope", "models": []}, 404, "unknown lab"),
        ({"lab_name": "toy-echo", "models": ["nope"]}, 404, "unknown model"),
        ({"lab_name": "toy-echo", "models": []}, 422, "at least one model"),
        ({"lab_name": "toy-echo", "models": ["toy-mean-denoiser"] * 2}, 422, "takes at most 1"),
        ({"lab_name": "toy-echo", "models": ["cnn-shapes"], "text": "hi"}, 422, "cannot analyse"),
        # the right task, a family the lab does not take (attention maps need attention layers)
        ({"lab_name": "attention", "models": ["cnn-shapes"], "has_image": True}, 422, "cannot analyse"),
        ({"lab_name": "toy-echo", "models": ["toy-mean-denoiser"]}, 422, "needs a text input"),
        ({"lab_name": "toy-echo", "models": ["toy-mean-denoiser"], "text": "x" * 81}, 422, "80 at most"),
        ({"lab_name": "predict", "models": ["cnn-shapes"], "text": "hi", "has_image": True}, 422, "no text"),
        ({"lab_name": "predict", "models": ["cnn-shapes"]}, 422, "needs an image"),
        ({"lab_name": "predict", "models": ["cnn-shapes", "cnn-shapes"], "has_image": True}, 422, "once"),
    ],
)
def test_one_validation_for_every_caller(kwargs: dict[str, Any], status: int, fragment: str) -> None:
    kwargs = {"params": {}, **kwargs}
    with pytest.raises(JobRequestError) as err:
        validate_job(kwargs.pop("lab_name"), kwargs.pop("models"), kwargs.pop("params"), **kwargs)
    assert err.value.status == status and fragment in str(err.value)


def test_the_worker_entry_point_runs_the_same_checks() -> None:
    with pytest.raises(JobRequestError, match="needs a text input"):
        run_lab("toy-echo", ["toy-mean-denoiser"], None, {}, text=None)
    with pytest.raises(JobRequestError, match="takes at most 1"):
        run_lab("toy-echo", ["toy-mean-denoiser"] * 2, None, {}, text="hi")


def test_cli_runs_a_text_lab_and_refuses_a_missing_text(tmp_path: Path) -> None:
    env = {**os.environ, **PLUGIN_ENV}
    cmd = [
        sys.executable,
        "-m",
        "backend.cli",
        "run",
        "toy-echo",
        "--param",
        "delay_s=0",
        "--out",
        str(tmp_path),
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "needs a text input" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [*cmd, "--text", QUESTION], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "[3] is there a" in r.stderr  # partial results as they arrived
    metrics = json.loads((tmp_path / "toy-echo-metrics.json").read_text())
    assert metrics["metrics"]["words"] == 4 - 1  # the lab echoes at most three words


@pytest.fixture(scope="module")
def plugin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("plugin")
    port = free_port()
    log = tmp / "serve.log"
    # The environment asks for CUDA; the command line's --device cpu must win, in every job.
    env = {**PLUGIN_ENV, "BIASLAB_DEVICE": "cuda"}
    proc = start_biaslab(["serve", "--port", str(port), "--device", "cpu", "--workers", "1"], log, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def poll_partials(c: httpx.Client, job_id: str, timeout: float = 120) -> tuple[dict, list[dict]]:
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = c.get(f"/api/jobs/{job_id}").json()
        if view.get("partial"):
            seen.setdefault(view["partial"]["step"], view["partial"])
        if view["status"] in ("finished", "failed", "cancelled"):
            return view, [seen[k] for k in sorted(seen)]
        time.sleep(0.05)
    raise TimeoutError(job_id)


def test_http_text_input_partials_and_device(plugin_server: str) -> None:
    with httpx.Client(base_url=plugin_server, timeout=30) as c:
        labs = {lab["name"]: lab for lab in c.get("/api/labs").json()}
        assert labs["toy-echo"]["text_input"]["suggestions"] == ["is there a red cube?"]
        assert labs["toy-echo"]["needs_image"] is False
        models = {m["name"]: m for m in c.get("/api/models").json()}
        assert models["toy-mean-denoiser"]["task"] == "denoise"
        assert models["toy-mean-denoiser"]["source"] == "computed"
        bad = c.post("/api/jobs", json={"lab": "toy-echo", "models": ["toy-mean-denoiser"]})
        assert bad.status_code == 422 and "needs a text input" in bad.json()["detail"]
        r = c.post("/api/jobs", json={"lab": "toy-echo", "models": ["toy-mean-denoiser"], "text": QUESTION})
        assert r.status_code == 202, r.text
        view, partials = poll_partials(c, r.json()["id"])
        assert view["status"] == "finished", view
        assert [p["step"] for p in partials] == [1, 2, 3]
        assert [p["text"] for p in partials] == ["is", "is there", "is there a"]
        assert view["partial"] is None and view["result"]["text"] == "is there a"
        assert view["result"]["metrics"]["device"] == "cpu"
        assert [w["device"] for w in c.get("/api/health").json()["worker_info"]] == ["cpu"]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_redis_worker_runs_jobs_on_its_device(device: str, tmp_path: Path) -> None:
    redis_server = RedisServer(need_binary("redis-server", "Redis mode"), free_port(), tmp_path)
    redis_server.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    other = "cuda" if device == "cpu" else "cpu"
    env = {**PLUGIN_ENV, "BIASLAB_DEVICE": other}  # a second read of the environment would say `other`
    procs = [
        start_biaslab(
            ["serve", "--port", str(port), "--redis", redis_server.url, "--device", "cpu"],
            tmp_path / "s.log",
            env,
        ),
        start_biaslab(["worker", "--redis", redis_server.url, "--device", device], tmp_path / "w.log", env),
    ]
    try:
        wait_healthy(url, procs[0], tmp_path / "s.log")
        with httpx.Client(base_url=url, timeout=30) as c:
            wait_until(lambda: c.get("/api/health").json()["workers"] == 1, 120, 0.5, what="the worker")
            assert [w["device"] for w in c.get("/api/health").json()["worker_info"]] == [device]
            body = {
                "lab": "toy-echo",
                "models": ["toy-mean-denoiser"],
                "text": "a b",
                "params": {"delay_s": 0},
            }
            job_id = c.post("/api/jobs", json=body).json()["id"]
            view, _ = poll_partials(c, job_id)
        assert view["status"] == "finished", view
        assert view["result"]["metrics"]["device"] == device
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        redis_server.stop()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "command", [["worker", "--redis", "redis://127.0.0.1:9/0"], ["serve"], ["run", "predict"]]
)
def test_asking_for_absent_cuda_is_a_one_line_error_at_start(command: list[str], tmp_path: Path) -> None:
    extra = ["--out", str(tmp_path)] if command[0] == "run" else []
    r = subprocess.run(
        [sys.executable, "-m", "backend.cli", *command, "--device", "cuda", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no CUDA device" in r.stderr, r.stderr
