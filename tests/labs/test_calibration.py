"""Calibration measures against hand computations and brute force, and the lab on the shipped zoo."""

from __future__ import annotations

import numpy as np
import pytest

from backend.data.examples import load_example
from backend.jobs.execute import run_lab
from backend.labs import calibration_metrics as cm


def test_ece_and_mce_match_a_hand_computed_example() -> None:
    # Bins of width 0.5 (2 bins): (0, 0.5] holds 0.2, 0.4; (0.5, 1] holds 0.6, 0.8, 1.0.
    conf = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    correct = np.array([0, 1, 1, 1, 0], bool)
    rel = cm.reliability(conf, correct, n_bins=2)
    # bin 1: acc 1/2, conf 0.3, gap 0.2; bin 2: acc 2/3, conf 0.8, gap 0.1333
    assert rel.count.tolist() == [2, 3]
    assert rel.ece == pytest.approx(2 / 5 * 0.2 + 3 / 5 * (0.8 - 2 / 3))
    assert rel.mce == pytest.approx(0.2)


def test_bins_are_left_open_right_closed() -> None:
    edges = cm.bin_edges(np.array([0.5]), 2)
    assert cm.bin_index(np.array([0.0, 0.5, 0.5000001, 1.0]), edges).tolist() == [0, 0, 1, 1]


def test_equal_mass_bins_hold_equal_counts() -> None:
    conf = np.random.default_rng(0).uniform(0.3, 1.0, 300)
    rel = cm.reliability(conf, conf > 0.5, n_bins=10, binning="equal-mass")
    assert rel.count.tolist() == [30] * 10


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(1)
    true_t = 2.5
    # Calibrated logits: each label is drawn from softmax(base) (Gumbel-max). 40,000 samples keep the
    # estimator's own sampling error near 1 %, so the check is on the fit, not on the sample.
    base = rng.normal(0, 3, (40_000, 10))
    labels = (base + rng.gumbel(size=base.shape)).argmax(1)
    t = cm.fit_temperature(base * true_t, labels)  # an over-confident model: logits multiplied by 2.5
    assert t == pytest.approx(true_t, rel=0.02)
    # And the search finds the empirical optimum, checked against a dense grid.
    grid = np.geomspace(2.0, 3.2, 401)
    best = grid[np.argmin([cm.nll(base * true_t, labels, g) for g in grid])]
    assert t == pytest.approx(best, rel=2e-3)


def test_proximity_formulas_match_brute_force() -> None:
    rng = np.random.default_rng(2)
    ref, query = cm.l2_normalise(rng.normal(size=(50, 4))), cm.l2_normalise(rng.normal(size=(7, 4)))
    k = 5
    d = cm.knn_distances(ref, query, k)
    brute = np.sort(np.linalg.norm(query[:, None] - ref[None], axis=2), axis=1)[:, :k]
    np.testing.assert_allclose(d, brute, rtol=1e-6)
    np.testing.assert_allclose(cm.proximity(d, "paper"), np.exp(-brute.mean(1)), rtol=1e-6)
    np.testing.assert_allclose(cm.proximity(d, "repo"), np.exp(-(brute**2)).mean(1), rtol=1e-6)


def test_piece_matches_a_hand_example_and_bounds_ece() -> None:
    # Two proximity halves; within each, one confidence bin (n_conf_bins=1).
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1, 1, 0, 1], bool)
    prox = np.array([0.9, 0.8, 0.1, 0.2])
    # high-proximity cell: acc 1, conf 0.9, gap 0.1; low: acc 0.5, conf 0.6, gap 0.1
    assert cm.piece(conf, correct, prox, n_conf_bins=1, n_prox_bins=2) == pytest.approx(0.1)
    rng = np.random.default_rng(3)
    conf, prox = rng.uniform(0.2, 1, 500), rng.uniform(0, 1, 500)
    correct = rng.uniform(size=500) < conf - 0.2 * (prox < 0.3)
    assert cm.piece(conf, correct, prox) >= cm.reliability(conf, correct).ece - 1e-12


def test_lab_on_the_zoo_and_a_photo() -> None:
    result = run_lab(
        "calibration",
        ["cnn-shapes", "deit-shapes"],
        load_example("chelsea"),
        {"n_images": 200, "reference_size": 200, "data": "shifted"},
    )
    for name in ("cnn-shapes", "deit-shapes"):
        m = result["metrics"][name]
        # Temperature scaling never changes the predicted class.
        assert m["before"]["accuracy"] == m["after"]["accuracy"]
        assert 0 <= m["before"]["ece"] <= m["before"]["mce"] <= 1
        img = m["your_image"]
        assert 0 < img["proximity"] <= 1 and 0 <= img["proximity_percentile"] <= 100
    diagram = result["figures"][0]
    steps = diagram["layout"]["sliders"][0]["steps"]
    assert len(steps) == 25 and steps[0]["method"] == "restyle"
    # Moving the slider changes the drawn accuracy bars (the browser needs no new job).
    assert steps[0]["args"][0]["y"][0] != steps[-1]["args"][0]["y"][0]
    assert "your image" in result["text"]
