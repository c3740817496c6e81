"""The two debiasing rules of Zhang et al. (arXiv 2403.05262; official code `yfzhang114/LLaVA-Align`), as
pure array functions: no model, no torch. METHODS.md §7 gives the formulas and the worked example.

- Post-hoc debias (contextual calibration in the style of Zhao et al. 2021): restrict the first answer
  token's distribution to the label space, normalise it (p), do the same for a content-free input (p_cf,
  normalised, then + 1e-4 as in the repo's `calibrate_mode='individual'`), and answer argmax q with
  q = (W p + b) / Σ(W p + b), W = diag(p_cf)⁻¹, b = 0 (`diagonal_W`, the default) or W = I, b = −p_cf
  (`identity_W`).
- Visual debias decoding (VDD, `vcd_utils/vcd_sample.py`): with logits ℓ (with the image) and ℓ̃ (without),
  keep the tokens with p(v | image) ≥ β · max p (the plausibility cutoff, log β + max ℓ on logits), and
  score them (1 + α) ℓ − α ℓ̃; every other token gets −∞.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

CF_EPS = 1e-4  # added to the normalised content-free distribution (LLaVA-Align, 'individual' mode)
CalibrateMode = Literal["diagonal_W", "identity_W"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def label_distribution(
    logits: np.ndarray, label_ids: list[int], *, top_k: int | None = 10, temperature: float = 1.0
) -> np.ndarray:
    """p over the label space from one position's logits (V,), normalised to sum 1.

    As `calibrate_label_dict` does: softmax, keep the top-k tokens (None keeps all), sum each label's
    probability; labels outside the top-k count 0. If no label made the top-k at all, the distribution is
    undefined and we return uniform (the repo would divide by zero)."""
    probs = softmax(logits, temperature)
    if top_k is not None and top_k < probs.shape[-1]:
        keep = np.argsort(-probs)[:top_k]
        masked = np.zeros_like(probs)
        masked[keep] = probs[keep]
        probs = masked
    p = probs[np.asarray(label_ids)]
    total = p.sum()
    if total <= 0:
        return np.full(len(label_ids), 1.0 / len(label_ids))
    return p / total


def content_free(p_cf: np.ndarray) -> np.ndarray:
    """The content-free estimate as the repo uses it: normalised, then + 1e-4 on every entry."""
    p_cf = np.asarray(p_cf, np.float64)
    return p_cf / p_cf.sum() + CF_EPS


def calibrate(p: np.ndarray, p_cf: np.ndarray, mode: CalibrateMode = "diagonal_W") -> np.ndarray:
    """q = (W p + b) / Σ(W p + b). `p_cf` is used as given (pass it through `content_free` first).

    diagonal_W: W = diag(p_cf)⁻¹, b = 0, i.e. q ∝ p / p_cf. identity_W: W = I, b = −p_cf."""
    p = np.asarray(p, np.float64)
    p_cf = np.asarray(p_cf, np.float64)
    if mode == "diagonal_W":
        w, b = np.diag(1.0 / p_cf), np.zeros_like(p)
    elif mode == "identity_W":
        w, b = np.eye(len(p)), -p_cf
    else:
        raise ValueError(f"unknown calibration mode {mode!r}")
    q = w @ p + b
    return q / q.sum()


@dataclass(frozen=True)
class VddStep:
    """One decoding step of visual debias decoding, everything a reader needs to see it."""

    scores: np.ndarray  # (V,) (1+α)ℓ − αℓ̃ on kept tokens, −inf elsewhere
    kept: np.ndarray  # (V,) bool: passed the plausibility cutoff
    cutoff: float  # log β + max ℓ


def vdd_scores(logits: np.ndarray, logits_cf: np.ndarray, alpha: float, beta: float) -> VddStep:
    """s_v = (1+α)ℓ_v − αℓ̃_v where ℓ_v ≥ log β + max ℓ, else −∞ (METHODS §7, `vcd_sample.py`).

    β = 0 keeps every token (log 0 = −∞); α = 0 returns ℓ on the kept tokens."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    lg = np.asarray(logits, np.float64)
    lcf = np.asarray(logits_cf, np.float64)
    with np.errstate(divide="ignore"):
        cutoff = float(np.log(beta) + lg.max())
    kept = lg >= cutoff
    scores = np.where(kept, (1.0 + alpha) * lg - alpha * lcf, -np.inf)
    return VddStep(scores=scores, kept=kept, cutoff=cutoff)


def choose(scores: np.ndarray, temperature: float = 0.0, rng: np.random.Generator | None = None) -> int:
    """Greedy (temperature 0) or multinomial sampling from softmax(scores / T); −∞ scores never win."""
    if temperature <= 0:
        return int(np.argmax(scores))
    probs = softmax(scores, temperature)
    gen = rng if rng is not None else np.random.default_rng()
    return int(gen.choice(len(probs), p=probs))
