"""Calibration measures on arrays (numpy only, no models): ECE/MCE, reliability bins, temperature
scaling, ProCal proximity and PIECE. METHODS.md §4 gives each formula and its source.

- ECE/MCE with 15 equal-width bins (lo, hi], as gpleiss/temperature_scaling `_ECELoss` (Guo et al.
  2017; Naeini et al. 2015); adaptive bins hold equal numbers of samples (Nixon et al. 2019). MCE is
  the plain maximum gap, not the ProCal repo's weighted one.
- Temperature: T* = argmin NLL(softmax(z/T), y), a bounded scalar search over log T (the widely
  copied LBFGS(lr=0.01) stops early; METHODS §4).
- Proximity (Xiong et al. 2023, arXiv 2306.04590) on L2-normalised embeddings, K neighbours:
  paper  D(x) = exp(-(1/K) Σ ‖h(x) − h(x_i)‖)
  repo   D(x) = (1/K) Σ exp(-‖h(x) − h(x_i)‖²)   (faiss returns squared distances)
- PIECE: ECE over joint (proximity quantile bin × confidence bin) cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import log_softmax, softmax

Binning = Literal["equal-width", "equal-mass"]
ProximityFormula = Literal["paper", "repo"]


@dataclass
class Reliability:
    """Per-bin statistics of a reliability diagram; empty bins have count 0 and NaN accuracy/confidence."""

    edges: np.ndarray  # (M+1,)
    count: np.ndarray  # (M,)
    accuracy: np.ndarray  # (M,)
    confidence: np.ndarray  # (M,)

    @property
    def gap(self) -> np.ndarray:
        return self.confidence - self.accuracy

    @property
    def ece(self) -> float:
        n = self.count.sum()
        filled = self.count > 0
        return float((self.count[filled] / n * np.abs(self.gap[filled])).sum()) if n else float("nan")

    @property
    def mce(self) -> float:
        filled = self.count > 0
        return float(np.abs(self.gap[filled]).max()) if filled.any() else float("nan")


def bin_edges(conf: np.ndarray, n_bins: int = 15, binning: Binning = "equal-width") -> np.ndarray:
    if binning == "equal-width":
        return np.linspace(0.0, 1.0, n_bins + 1)
    # Equal mass: quantiles of the confidences, ends pinned to 0 and 1 (ties can merge bins).
    edges = np.quantile(conf, np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    return np.asarray(edges, dtype=np.float64)


def bin_index(conf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin m holds confidences in (edges[m], edges[m+1]]; a confidence of exactly 0 goes to bin 0."""
    idx = np.searchsorted(edges, conf, side="left") - 1
    return np.clip(idx, 0, len(edges) - 2)


def reliability(
    conf: np.ndarray, correct: np.ndarray, n_bins: int = 15, binning: Binning = "equal-width"
) -> Reliability:
    edges = bin_edges(conf, n_bins, binning)
    idx = bin_index(conf, edges)
    m = len(edges) - 1
    count = np.bincount(idx, minlength=m).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=m) / count
        mean_conf = np.bincount(idx, weights=conf, minlength=m) / count
    return Reliability(edges, count, acc, mean_conf)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean())


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """T* minimising the NLL, searched on log T inside `bounds` (Brent's method, bounded)."""
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=(lo, hi), method="bounded"
    )
    return float(np.exp(res.x))


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.asarray(softmax(logits / temperature, axis=1))


def knn_distances(reference: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distances (N, k) from each query to its k nearest reference embeddings."""
    from sklearn.neighbors import NearestNeighbors  # here: importing sklearn costs every process seconds

    nn = NearestNeighbors(n_neighbors=k).fit(reference)
    dist, _ = nn.kneighbors(queries)
    return np.asarray(dist)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def proximity(distances: np.ndarray, formula: ProximityFormula = "paper") -> np.ndarray:
    """Proximity in (0, 1] from the distances (N, K) to the K nearest neighbours."""
    if formula == "paper":
        return np.asarray(np.exp(-distances.mean(axis=1)))
    return np.asarray(np.exp(-(distances**2)).mean(axis=1))


def quantile_bins(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bin index of each value and the bin edges (as KBinsDiscretizer(strategy='quantile'))."""
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max(len(edges) - 2, 0))
    return idx, edges


def piece(
    conf: np.ndarray, correct: np.ndarray, prox: np.ndarray, n_conf_bins: int = 15, n_prox_bins: int = 10
) -> float:
    """Proximity-informed ECE: |acc − conf| over joint (proximity, confidence) cells, weighted by size."""
    p_idx, _ = quantile_bins(prox, n_prox_bins)
    c_idx = bin_index(conf, bin_edges(conf, n_conf_bins))
    cell = p_idx * n_conf_bins + c_idx
    total = 0.0
    for c in np.unique(cell):
        sel = cell == c
        total += sel.sum() / len(conf) * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def gap_by_proximity(
    conf: np.ndarray, correct: np.ndarray, prox: np.ndarray, n_bins: int = 6
) -> dict[str, np.ndarray]:
    """Mean proximity, confidence − accuracy and count in each proximity quantile bin (the repo's plot)."""
    idx, _ = quantile_bins(prox, n_bins)
    bins = np.unique(idx)
    return {
        "proximity": np.array([prox[idx == b].mean() for b in bins]),
        "gap": np.array([conf[idx == b].mean() - correct[idx == b].mean() for b in bins]),
        "count": np.array([(idx == b).sum() for b in bins]),
    }
