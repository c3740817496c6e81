"""Model-randomisation sanity checks for saliency maps (Adebayo et al., NeurIPS 2018, arXiv 1810.03292).

A saliency method that explains what a model *learned* must change when the learned weights are replaced
by random ones. This module measures that over a probe set of images and several seeds:

- The random model is **rebuilt by the model's own builder** under a seed, so initialisations that are
  part of the architecture (ConViT's locality init of `pos_proj`, METHODS §1; BatchNorm's unit scale;
  timm's truncated-normal linears) are those of a fresh model, not PyTorch defaults. Only weight
  matrices the builder leaves constant (a zero-initialised classifier) are drawn at random instead.
- **All layers at once**: every weight from the rebuilt model.
- **Cascade** (Adebayo's Fig. 2): from the output down, one unit at a time (head, final norm, last block,
  ..., input embedding); step k uses the rebuilt model's weights in the top k units and the trained ones
  below. Units are the model's top-level modules, with containers of 3 or more parameterised children
  (timm `blocks`, an MLP's `body`) split into their children, ordered by when a forward pass first
  reaches them. Root-level parameters (ConViT's `cls_token`, `pos_embed`) form one unit just above the
  patch embedding.
- Maps are compared at their **native resolution** (GradCAM at its layer's grid, IG per input pixel):
  upsampling 64 GradCAM cells to 1,024 interpolated pixels inflates rank correlations.
- The statistic is **Kendall τ-b** (tie-aware; post-ReLU GradCAM maps have many tied zeros) or Spearman's
  ρ. Where a map is constant the statistic is undefined and returned as NaN (shown as missing, never 0,
  which would read as a pass). The fraction of exactly zero cells is reported beside it.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from backend.models.registry import ModelEntry

# (model, cascade step?) -> {method: (B, h, w) maps}; at cascade steps a method may be left out (cost)
MapFn = Callable[[nn.Module, bool], dict[str, np.ndarray]]


def rebuild_random(entry: ModelEntry, model: nn.Module, seed: int) -> nn.Module:
    """A fresh, untrained model from the entry's own builder under `seed` (global RNG state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if entry.timm_name is not None:  # the registry's timm builder loads pretrained weights: build bare
            import timm

            fresh = timm.create_model(entry.timm_name, pretrained=False, num_classes=len(entry.class_names))
        else:
            fresh = entry.builder()
        _redraw_constant_matrices(fresh)
    fresh.pretrained_cfg = getattr(model, "pretrained_cfg", {})  # type: ignore[assignment]
    device = next(model.parameters()).device
    return fresh.eval().to(device)


def _redraw_constant_matrices(model: nn.Module) -> None:
    """Weight matrices a builder leaves constant (timm's MLP-Mixer zero-initialises its classifier) are
    drawn from a truncated normal, std 0.02, like timm's other linears. A zero head makes every gradient
    exactly zero, so every map of the 'random' model would be constant and the check undefined."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)


def _units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    units: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        kids = [(n, c) for n, c in child.named_children() if any(True for _ in c.parameters())]
        if isinstance(child, nn.ModuleList | nn.Sequential) and len(kids) >= 3:
            units.extend((f"{name}.{n}", c) for n, c in kids)
        elif any(True for _ in child.parameters()):
            units.append((name, child))
    return units


ROOT_UNIT = "cls_token, pos_embed"


def cascade_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, list[str]]]:
    """Cascade units from the output down: (label, state-dict keys it owns), top unit first."""
    units = _units(model)
    order: dict[str, int] = {}
    handles = []
    for name, unit in units:

        def hook(_m: nn.Module, _a: Any, _o: Any = None, name: str = name) -> None:
            order.setdefault(name, len(order))

        handles.append(unit.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    units.sort(key=lambda u: order.get(u[0], len(units) + 1))  # never reached: treated as last
    keys = list(model.state_dict())
    groups = [(name, [k for k in keys if k.startswith(name + ".")]) for name, _ in units]
    root = [k for k in keys if "." not in k]
    if root:  # used right after the input embedding
        groups.insert(1 if groups else 0, (", ".join(root), root))
    return [g for g in reversed(groups) if g[1]]


def cascade_models(
    trained: nn.Module, random: nn.Module, groups: list[tuple[str, list[str]]]
) -> Iterator[nn.Module]:
    """The cascade: one copy of `trained` whose top k groups hold `random`'s weights (and buffers),
    yielded for k = 1, 2, ... in turn. The same copy is randomised one more group per step, so it is
    only valid until the next step; one deepcopy per seed, not one per step."""
    out = copy.deepcopy(trained).eval()
    rand_state, state = random.state_dict(), out.state_dict()  # the state tensors share storage
    for _, keys in groups:
        with torch.no_grad():  # not held across the yield: the caller's maps need gradients
            for key in keys:
                state[key].copy_(rand_state[key])
        yield out


def rank_statistic(a: np.ndarray, b: np.ndarray, kind: str = "kendall") -> float:
    """Kendall τ-b or Spearman ρ between two maps; NaN when either map is constant (undefined)."""
    a, b = np.ravel(np.asarray(a, dtype=np.float64)), np.ravel(np.asarray(b, dtype=np.float64))
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan
    from scipy.stats import kendalltau, spearmanr  # here: scipy.stats costs every process seconds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "kendall":
            return float(kendalltau(a, b).statistic)  # variant "b" (tie-corrected) is scipy's default
        if kind == "spearman":
            return float(spearmanr(a, b).statistic)
    raise ValueError(f"unknown statistic {kind!r}; use 'kendall' or 'spearman'")


def zero_fraction(maps: np.ndarray) -> np.ndarray:
    """Per map, the fraction of cells that are exactly zero. maps (B, h, w) -> (B,)."""
    m = np.asarray(maps)
    return (m == 0).reshape(m.shape[0], -1).mean(1)


def summarise(values: np.ndarray) -> dict[str, Any]:
    """mean ± std over the defined values, and how many were undefined; NaN -> None for JSON."""
    v = np.asarray(values, dtype=np.float64).ravel()
    ok = v[np.isfinite(v)]
    return {
        "mean": float(ok.mean()) if ok.size else None,
        "std": float(ok.std(ddof=1)) if ok.size > 1 else None,
        "n": int(v.size),
        "n_undefined": int(v.size - ok.size),
    }


def nan_to_none(values: Any) -> Any:
    """Nested lists of floats with NaN as None (JSON has no NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    return [nan_to_none(a) for a in arr] if arr.ndim else (None if not np.isfinite(arr) else float(arr))


@dataclass
class SanityResult:
    statistic: str
    seeds: list[int]
    # method -> (seeds, images): statistic between trained and fully randomised maps (NaN = undefined)
    full: dict[str, np.ndarray] = field(default_factory=dict)
    # method -> (steps + 1, seeds, images): cascade, step 0 = trained model compared with itself
    cascade: dict[str, np.ndarray] = field(default_factory=dict)
    cascade_labels: list[str] = field(default_factory=list)
    # method -> {"trained": (images,), "randomised": (seeds, images)} fraction of exactly-zero cells
    zeros: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    example_random: dict[str, np.ndarray] = field(default_factory=dict)  # first seed, first image

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"statistic": self.statistic, "seeds": self.seeds}
        for method, vals in self.full.items():
            out[f"{method}_all_layers"] = summarise(vals)
            z = self.zeros[method]
            out[f"{method}_zero_fraction"] = {
                "trained": round(float(np.mean(z["trained"])), 4),
                "randomised": round(float(np.mean(z["randomised"])), 4),
                "randomised_max": round(float(np.max(z["randomised"])), 4),
            }
        for method, vals in self.cascade.items():
            out[f"{method}_cascade"] = {
                "units": self.cascade_labels,
                "mean": nan_to_none([_nanmean(v) for v in vals]),
                "std": nan_to_none([_nanstd(v) for v in vals]),
                "n_undefined": [int((~np.isfinite(v)).sum()) for v in vals],
            }
        return out


def _nanmean(v: np.ndarray) -> float:
    ok = v[np.isfinite(v)]
    return float(ok.mean()) if ok.size else math.nan


def _nanstd(v: np.ndarray) -> float:
    ok = v[np.isfinite(v)]
    return float(ok.std(ddof=1)) if ok.size > 1 else math.nan


def _no_progress(fraction: float, message: str) -> None:
    pass


def _compare(ref: np.ndarray, other: np.ndarray, kind: str) -> np.ndarray:
    return np.array([rank_statistic(a, b, kind) for a, b in zip(ref, other, strict=True)])


def run_sanity(
    entry: ModelEntry,
    model: nn.Module,
    maps: MapFn,
    x: torch.Tensor,
    *,
    seeds: list[int],
    statistic: str = "kendall",
    randomisations: tuple[str, ...] = ("all-layers", "cascade"),
    progress: Callable[[float, str], None] | None = None,
) -> SanityResult:
    """Compare `maps(model)` with `maps(randomised)` for each seed, all at once and/or as a cascade.

    `maps` is called on the trained model first, then on each randomised variant; it must compute the
    maps for the same images and classes each time (the trained model's classes).
    """
    progress = progress or _no_progress
    trained = maps(model, False)
    res = SanityResult(statistic, list(seeds))
    for method, m in trained.items():
        res.zeros[method] = {"trained": zero_fraction(m), "randomised": np.zeros((len(seeds), len(m)))}
    groups = cascade_order(model, x) if "cascade" in randomisations else []
    res.cascade_labels = ["none (trained)"] + [g[0] for g in groups]
    steps = len(groups) if groups else 1
    for si, seed in enumerate(seeds):
        random = rebuild_random(entry, model, seed)
        if "all-layers" in randomisations:
            progress(si / len(seeds), f"seed {seed}: all layers randomised")
            rmaps = maps(random, False)
            for method, ref in trained.items():
                res.full.setdefault(method, np.full((len(seeds), len(ref)), np.nan))[si] = _compare(
                    ref, rmaps[method], statistic
                )
                res.zeros[method]["randomised"][si] = zero_fraction(rmaps[method])
                if si == 0:
                    res.example_random[method] = rmaps[method][0]
        for k, mixed in enumerate(cascade_models(model, random, groups), start=1):
            progress((si + k / (steps + 1)) / len(seeds), f"seed {seed}: cascade down to {groups[k - 1][0]}")
            cmaps = maps(mixed, True)
            for method, ref in trained.items():
                if method not in cmaps:
                    continue
                arr = res.cascade.setdefault(method, np.full((len(groups) + 1, len(seeds), len(ref)), np.nan))
                arr[0, si] = _compare(ref, ref, statistic)
                arr[k, si] = _compare(ref, cmaps[method], statistic)
            del mixed
        del random
    return res
