"""The debias formulas of METHODS §7 against its worked example and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from backend.labs.vlm_debias_math import (
    CF_EPS,
    calibrate,
    choose,
    content_free,
    label_distribution,
    vdd_scores,
)


def test_vdd_matches_the_worked_example_in_methods() -> None:
    # METHODS §7: ℓ = [2, 1.9, −3], ℓ̃ = [3, 0, 0], α = 1, β = 0.1 gives [1.0, 3.8, −inf].
    step = vdd_scores(np.array([2.0, 1.9, -3.0]), np.array([3.0, 0.0, 0.0]), alpha=1.0, beta=0.1)
    np.testing.assert_allclose(step.scores[:2], [1.0, 3.8])
    assert step.scores[2] == -np.inf
    assert step.kept.tolist() == [True, True, False]
    assert step.cutoff == pytest.approx(np.log(0.1) + 2.0)
    # The image-supported token overtakes the prior-driven one; plain greedy would pick token 0.
    assert choose(step.scores) == 1 and choose(np.array([2.0, 1.9, -3.0])) == 0


def test_vdd_cutoff_is_the_same_on_logits_and_log_probabilities() -> None:
    rng = np.random.default_rng(0)
    lg, lcf = rng.normal(size=7), rng.normal(size=7)
    a = vdd_scores(lg, lcf, 0.5, 0.2)
    logp = lg - np.log(np.exp(lg).sum())
    logp_cf = lcf - np.log(np.exp(lcf).sum())
    b = vdd_scores(logp, logp_cf, 0.5, 0.2)
    assert (a.kept == b.kept).all()
    # Scores differ by a constant on the kept tokens, so the softmax (and the choice) is the same.
    diff = a.scores[a.kept] - b.scores[b.kept]
    np.testing.assert_allclose(diff, diff[0])


def test_vdd_without_contrast_or_cutoff_is_plain_decoding() -> None:
    lg = np.array([0.3, -1.0, 2.0])
    step = vdd_scores(lg, np.array([5.0, 5.0, -5.0]), alpha=0.0, beta=0.0)
    np.testing.assert_allclose(step.scores, lg)
    assert step.kept.all()


def test_posthoc_diagonal_w_by_hand() -> None:
    # p = [0.8, 0.2] (yes, no) with the image; without it p_cf = [0.9, 0.1].
    p, p_cf = np.array([0.8, 0.2]), content_free(np.array([0.9, 0.1]))
    np.testing.assert_allclose(p_cf, [0.9 + CF_EPS, 0.1 + CF_EPS])
    # By hand: W p = [0.8 / 0.9001, 0.2 / 0.1001] = [0.88879, 1.99800]; sum 2.88679.
    q = calibrate(p, p_cf)
    np.testing.assert_allclose(q, [0.88879 / 2.88679, 1.99800 / 2.88679], rtol=1e-4)
    assert int(np.argmax(q)) == 1  # the prior's "yes" is undone: the answer flips to "no"


def test_posthoc_identity_w_by_hand() -> None:
    # W = I, b = −p_cf: W p + b = [0.4, 0.1, −0.1], which sums to 0.4.
    p, p_cf = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.2, 0.3])
    q = calibrate(p, p_cf, "identity_W")
    np.testing.assert_allclose(q, np.array([0.4, 0.1, -0.1]) / 0.4)


def test_uniform_content_free_leaves_p_unchanged() -> None:
    p = np.array([0.1, 0.6, 0.3])
    np.testing.assert_allclose(calibrate(p, content_free(np.ones(3))), p)


def test_label_distribution_uses_the_top_k_tokens_only() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    # Labels are tokens 1 and 3; with top_k = 2 only tokens 0 and 1 survive, so label 3 counts 0.
    np.testing.assert_allclose(label_distribution(logits, [1, 3], top_k=2), [1.0, 0.0])
    np.testing.assert_allclose(label_distribution(logits, [1, 3], top_k=None), [0.3 / 0.35, 0.05 / 0.35])
    np.testing.assert_allclose(label_distribution(logits, [2, 3], top_k=2), [0.5, 0.5])  # none: uniform


def test_sampling_never_picks_a_cut_token() -> None:
    step = vdd_scores(np.array([2.0, 1.9, -3.0]), np.array([3.0, 0.0, 0.0]), alpha=1.0, beta=0.1)
    rng = np.random.default_rng(0)
    picks = {choose(step.scores, temperature=1.0, rng=rng) for _ in range(200)}
    assert picks <= {0, 1} and picks == {0, 1}
