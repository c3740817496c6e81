"""A small bias-free UNet denoiser (Kadkhodaie, Guth, Simoncelli & Mallat, "Generalization in diffusion
models arises from geometry-adaptive harmonic representations", ICLR 2024, arXiv 2310.02557; bias-free
CNNs: Mohan, Kadkhodaie, Simoncelli & Fernandez-Granda, ICLR 2020, arXiv 1906.05478).

Blind denoiser of y = x + σz with x in [0, 1]: it is not told σ. Every convolution has `bias=False`, the
non-linearity is ReLU, pooling is an average and upsampling is nearest-neighbour, so the network is
positively homogeneous, f(αy) = αf(y), and piecewise linear: f(y) = J(y)·y exactly, where J = ∂f/∂y.
It predicts the residual r(y) (the noise) and returns f(y) = y − r(y), as the paper's models do.

Zoo entries: `unet-<set>` on each 16×16 dataset of backend/data/denoise_sets.py, and the two-subset
memorisation models `unet-disks-n<N>-<a|b>` trained on disjoint subsets S₁, S₂ of N disks (METHODS §6b).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backend.models.registry import ModelEntry, register_model

CITATION = (
    "Kadkhodaie, Guth, Simoncelli & Mallat, Generalization in diffusion models arises from geometry-adaptive "
    "harmonic representations, ICLR 2024 (arXiv 2310.02557)"
)
INPUT_SIZE = (1, 16, 16)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.ReLU(),
    )


class BiasFreeUNet(nn.Module):
    """Three scales (16², 8², 4²), two 3×3 convs per block, skip connections by concatenation."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.enc1 = _block(1, w)  # (B, w, 16, 16)
        self.enc2 = _block(w, 2 * w)  # (B, 2w, 8, 8)
        self.mid = _block(2 * w, 2 * w)  # (B, 2w, 4, 4)
        self.dec2 = _block(4 * w, 2 * w)  # (B, 2w, 8, 8)
        self.dec1 = _block(3 * w, w)  # (B, w, 16, 16)
        self.out = nn.Conv2d(w, 1, 3, padding=1, bias=False)
        self.pool = nn.AvgPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def residual(self, y: torch.Tensor) -> torch.Tensor:  # (B, 1, 16, 16) -> (B, 1, 16, 16)
        e1 = self.enc1(y)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
        return self.out(d1)

    def forward(self, y: torch.Tensor, sigma: Any = None) -> torch.Tensor:
        """x̂ = y − r(y). `sigma` is accepted for a common denoiser signature and ignored (blind)."""
        return y - self.residual(y)


def build_unet() -> nn.Module:
    return BiasFreeUNet()


# --- recipes (what `biaslab zoo train NAME` runs; copied into each card) ------------------------------

BASE_RECIPE: dict[str, Any] = {
    "trainer": "denoiser",  # backend/train/denoiser.py
    "dataset": "patches16",
    "train_size": 2000,
    "test_size": 200,
    "subset": None,  # "a" / "b": the first / second half of a 2·N draw (disjoint memorisation subsets)
    "batch_size": 64,
    "steps": 1000,
    "lr": 1e-3,
    "sigma_max": 1.0,  # σ ~ U[0, σ_max] per image, x in [0, 1]
    "grad_clip": 1.0,
}
SETS = {"patches": "patches16", "faces": "faces16", "digits": "digits16", "disks": "disks16"}
MEMORISATION_N = (1, 10, 100, 1000)
RECIPES: dict[str, dict[str, Any]] = {
    **{f"unet-{k}": {**BASE_RECIPE, "dataset": d, "train_size": None} for k, d in SETS.items()},
    **{
        # Cheaper: eight of them share the CPU budget (600 steps of 32: 19 passes over 1000 disks).
        f"unet-disks-n{n}-{s}": {
            **BASE_RECIPE,
            "dataset": "disks16",
            "train_size": n,
            "subset": s,
            "steps": 600,
            "batch_size": 32,
        }
        for n in MEMORISATION_N
        for s in ("a", "b")
    },
}


def _register(name: str, description: str) -> None:
    recipe = RECIPES[name]
    register_model(
        ModelEntry(
            name=name,
            family="unet",
            task="denoise",
            dataset=str(recipe["dataset"]),
            builder=build_unet,
            input_size=INPUT_SIZE,
            mean=(0.0,),
            std=(1.0,),
            description=description,
            citation=CITATION,
            weights=name,
            recipe=recipe,
        )
    )


for _k, _d in SETS.items():
    _register(
        f"unet-{_k}",
        f"Bias-free UNet (no additive constants, so f(y) = J(y)·y), a blind denoiser trained on {_d}.",
    )
for _n in MEMORISATION_N:
    for _s, _which in (("a", "S₁"), ("b", "S₂")):
        _register(
            f"unet-disks-n{_n}-{_s}",
            f"Bias-free UNet trained on {_which}: {_n} disk image(s), disjoint from the other subset "
            "(memorisation vs generalisation).",
        )
