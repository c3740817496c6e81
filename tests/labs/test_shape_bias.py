"""Shape bias, PGD and the shape-bias lab: hand-made decisions, attack invariants, the lab end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from backend.cli import main as cli_main
from backend.config import Settings
from backend.data import load_dataset
from backend.data.cue_conflict import load_cue_conflict, shape_bias
from backend.labs.shape_cues import attack, foreground_mask, pair_matrix, patch_shuffle, silhouette
from backend.main import create_app
from backend.models import create_model


def test_shape_bias_counts_only_conflicting_images() -> None:
    shape = np.array([0, 0, 1, 1, 2, 2, 3])
    texture = np.array([1, 1, 0, 0, 2, 2, 3])  # the last three are aligned: they must not count
    pred = np.array([0, 1, 0, 5, 2, 2, 3])  # shape, texture, texture, neither; aligned all "right"
    got = shape_bias(pred, shape, texture)
    assert (got["shape_decisions"], got["texture_decisions"], got["n"]) == (1, 2, 4)
    assert got["shape_bias"] == pytest.approx(1 / 3)
    n_s, n_t, frac = pair_matrix(pred, shape, texture, 6)
    assert frac[0, 1] == pytest.approx(0.5) and frac[1, 0] == 0.0  # (0,1): one each; (1,0): texture, neither
    assert np.isnan(np.diag(frac)).all() and n_s.sum() + n_t.sum() == 3 + 3  # aligned n_s kept, not in frac
    assert shape_bias(np.array([2]), np.array([2]), np.array([2]))["n"] == 0  # no conflict: nothing counted


def test_patch_shuffle_and_silhouette() -> None:
    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    out = patch_shuffle(img, 4, np.random.default_rng(1))
    assert not np.array_equal(out, img)
    # The same 8×8 patches, only moved: each output patch is one of the input's.
    patches = {img[i : i + 8, j : j + 8].tobytes() for i in range(0, 32, 8) for j in range(0, 32, 8)}
    assert {out[i : i + 8, j : j + 8].tobytes() for i in range(0, 32, 8) for j in range(0, 32, 8)} == patches
    # A flat square on a flat background: the silhouette is exactly the square.
    sq = np.full((32, 32, 3), [0.2, 0.6, 0.3], np.float32)
    sq[8:20, 10:24] = [0.9, 0.1, 0.1]
    truth = np.zeros((32, 32), bool)
    truth[8:20, 10:24] = True
    assert np.array_equal(foreground_mask(sq), truth)
    assert len(np.unique(silhouette(sq).reshape(-1, 3), axis=0)) == 2


def test_texture_easy_set_matches_its_design() -> None:
    s = load_dataset("cue-texture-easy", "train", n=400, seed=3)
    assert np.bincount(s.labels, minlength=8).tolist() == [50] * 8
    textured = s.meta["textured"]
    assert abs(textured.mean() - 0.8) < 0.06  # binomial sd at n = 400 is 0.02
    # The texture never contradicts the shape: it is the label's texture, or absent (-1).
    assert (s.meta["texture"] == np.where(textured, s.labels, -1)).all()
    # The texture fills an ellipse on a flat background, as the conflict set's silhouettes sit on one.
    # Neighbouring pixels differ more in the centre of textured images than of flat ones (pixel noise, the
    # bar's and the shape's edges only), while the 2-pixel border, outside every ellipse, is as flat in both.
    diff = np.abs(np.diff(s.images.astype(float), axis=2)).mean(3)  # (n, 32, 31)
    ring = np.ones((32, 31), bool)
    ring[2:-2, 2:-2] = False
    centre, border = diff[:, 8:24, 8:23].mean((1, 2)), diff[:, ring].mean(1)
    assert np.median(centre[textured]) > 1.5 * np.median(centre[~textured])
    assert np.median(border[textured]) < 1.2 * np.median(border[~textured])
    assert np.median(centre[textured]) > 2 * np.median(border[textured])


@pytest.fixture(scope="module")
def cnn_and_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    x, y = load_dataset("shapes", "test", n=32, seed=0).tensors()
    return create_model("cnn-shapes"), x, y


def test_pgd_raises_the_loss_inside_the_eps_ball(cnn_and_batch: Any) -> None:
    model, x, y = cnn_and_batch
    eps = 4 / 255
    xa = attack(model, x, y, eps, steps=5)
    assert float((xa - x).abs().max()) <= eps + 1e-6
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    with torch.no_grad():
        clean, adv = F.cross_entropy(model(x), y), F.cross_entropy(model(xa), y)
        # Control: random ±ε noise of the same size barely moves the loss; PGD raises it far more.
        noise = x + eps * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(0)))
        noisy = F.cross_entropy(model(noise.clamp(0, 1)), y)
    assert float(adv) > float(clean) + 1.0 and float(adv) > 2 * float(noisy)


def test_standard_cnn_robust_accuracy_at_8_is_far_below_clean(cnn_and_batch: Any) -> None:
    model, x, y = cnn_and_batch
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    xa = attack(model, x, y, 8 / 255, steps=10)
    with torch.no_grad():
        robust = float((model(xa).argmax(1) == y).float().mean())
    assert clean >= 0.9 and robust <= clean - 0.5, (clean, robust)


SMALL = {"per_pair": 1, "control_images": 16, "attack_images": 16, "attack_steps": 2, "ladder_eps": [0, 8]}
MODELS = ["cnn-shapes", "cnn-shapes-pgd8"]


def test_lab_through_the_cli_and_the_api(tmp_path: Path) -> None:
    args = ["run", "shape-bias", "--out", str(tmp_path)]
    for m in MODELS:
        args += ["--model", m]
    for k, v in SMALL.items():
        args += ["--param", f"{k}={json.dumps(v)}"]
    assert cli_main(args) == 0
    cli = json.loads((tmp_path / "shape-bias-metrics.json").read_text())["metrics"]
    assert len(list(tmp_path.glob("shape-bias-*.html"))) >= 6
    # Shape bias recomputed independently from the model's own decisions on the same conflict images.
    conflict = load_cue_conflict("conflict", per_pair=1, seed=0)
    with torch.no_grad():
        pred = create_model("cnn-shapes")(conflict.tensors()[0]).argmax(1).numpy()
    s, t = conflict.meta["shape"], conflict.meta["texture"]
    n_s, n_t = int((pred == s).sum()), int((pred == t).sum())
    assert cli["cnn-shapes"]["shape_bias"] == pytest.approx(n_s / (n_s + n_t))
    assert cli["cnn-shapes"]["n"] == 56
    # The robust CNN resists the attack it was trained for far better than the standard one.
    assert cli["cnn-shapes-pgd8"]["robust_accuracy"] > cli["cnn-shapes"]["robust_accuracy"]
    assert cli["ladders"]["shapes"][0]["model"] == "cnn-shapes"

    with TestClient(create_app(Settings(), mount_ui=False)) as client:
        r = client.post("/api/jobs", json={"lab": "shape-bias", "models": MODELS, "params": SMALL})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while (view := client.get(f"/api/jobs/{r.json()['id']}").json())["status"] not in (
            "finished",
            "failed",
        ):
            assert time.monotonic() < deadline, view
            time.sleep(0.2)
        assert view["status"] == "finished", view["error"]
        api = view["result"]["metrics"]
        for m in MODELS:
            for key in ("shape_bias", "shape_only_accuracy", "texture_only_accuracy", "robust_accuracy"):
                assert api[m][key] == pytest.approx(cli[m][key]), (m, key)
        # Too much work is refused before queueing, with the field named.
        bad = client.post(
            "/api/jobs",
            json={
                "lab": "shape-bias",
                "models": MODELS,
                "params": {"attack_images": 500, "attack_steps": 50},
            },
        )
        assert bad.status_code == 422 and "too much work" in bad.text
        bad = client.post(
            "/api/jobs", json={"lab": "shape-bias", "models": MODELS, "params": {"ladder_eps": [99]}}
        )
        assert bad.status_code == 422


@pytest.mark.browser
def test_shape_bias_lab_in_the_browser(browser_page: Any, live_server: Any, artifacts_dir: Path) -> None:
    from tests.app.test_browser import OVERLAPS_JS, open_page, pick_example, run_lab

    page = browser_page
    open_page(page, live_server.url + "/?lab=shape-bias&models=" + ",".join(MODELS))
    pick_example(page, "star", "example-shapes-star")
    status = run_lab(page, "shape-bias")
    assert "Done" in status, status
    page.locator("#shape-bias-fig-0 .js-plotly-plot").wait_for(timeout=30_000)
    page.wait_for_timeout(700)
    page.screenshot(path=str(artifacts_dir / "ui-shape-bias-lab.png"), full_page=True)
    assert page.locator("#shape-bias-notice-0").is_visible()
    assert "Traceback" not in page.content()
    assert page.evaluate(OVERLAPS_JS, "#tab-shape-bias") == []  # no text runs into other text
    figures = page.locator("#tab-shape-bias .js-plotly-plot")
    assert figures.count() >= 7  # bias, accuracy, ladder, pairs, versions, PGD view, robustness
