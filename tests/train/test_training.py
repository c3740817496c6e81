"""A short training run: the loss goes down; PGD stays inside its ball; ECE is the standard one."""

from __future__ import annotations

import numpy as np
import torch

from backend.data.shapes import load_shapes
from backend.models.zoo import BASE_RECIPE, build_cnn, build_convit
from backend.train.classifier import ece, pgd_linf, seed_everything, train_classifier
from backend.train.history import ConvitHistory


def test_short_run_loss_goes_down() -> None:
    seed_everything(0)
    x, y = load_shapes("train", seed=0, n=384).tensors()
    model = build_cnn()
    r = train_classifier(model, x, y, {**BASE_RECIPE, "lr": 3e-3}, steps=100, progress=False)
    assert r.steps == 100 and len(r.losses) == 2
    assert r.losses[-1] < r.losses[0] - 0.2, r.losses


def test_pgd_stays_in_the_ball() -> None:
    seed_everything(0)
    x, y = load_shapes("test", seed=0, n=16).tensors()
    model = build_cnn().eval()
    eps = 8 / 255
    xa = pgd_linf(model, x, y, eps, eps / 4, 3, torch.Generator().manual_seed(0))
    assert float((xa - x).abs().max()) <= eps + 1e-6 and float(xa.min()) >= 0 and float(xa.max()) <= 1
    assert all(p.grad is None for p in model.parameters())


def test_ece_perfect_and_overconfident() -> None:
    labels = np.array([0, 1, 0, 1])
    assert ece(np.eye(2)[labels], labels) == 0.0
    wrong = np.array([[0.9, 0.1]] * 4)
    assert abs(ece(wrong, labels) - 0.4) < 1e-9  # confidence 0.9, accuracy 0.5


def test_convit_history_snapshot() -> None:
    seed_everything(0)
    x, y = load_shapes("val", seed=0, n=32).tensors()
    model = build_convit()
    hist = ConvitHistory(x[:8], x, y)
    r = train_classifier(
        model, x, y, BASE_RECIPE, steps=4, callback=hist, callback_steps={0, 4}, progress=False
    )
    assert r.steps == 4 and [s["step"] for s in hist.snapshots] == [0, 4]
    snap = hist.snapshots[0]
    assert np.array(snap["gates"]).shape == (4, 4)  # 4 GPSA layers × 4 heads
    np.testing.assert_allclose(snap["gates"][0], 1 / (1 + np.exp(-1.0)), atol=1e-6)  # σ(1) at init
    centres = np.abs(np.array(snap["centres"][0]))
    np.testing.assert_allclose(centres, 0.5, atol=1e-5)  # (±0.5, ±0.5) for 4 heads at init
    assert np.all(np.array(snap["nonlocality"]) > 0)
