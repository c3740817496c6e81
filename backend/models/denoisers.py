"""Closed-form denoisers computed from a dataset (METHODS.md §6a; Lukoianov et al., "Locality in image
diffusion models emerges from data statistics", arXiv 2509.09672, repo
`ottogin/locality-in-diffusion-models`).

Noise convention. The paper uses the VP process x_t = √ᾱ x₀ + √(1−ᾱ) ε. Dividing by √ᾱ gives
y = x_t/√ᾱ = x₀ + σε with σ² = (1−ᾱ)/ᾱ, so every denoiser here takes (y, σ) with x₀ in [0, 1] and returns
x̂₀ = E[x₀ | y], the same estimate; ∂x̂₀/∂x_t = ∂x̂₀/∂y / √ᾱ differs by a constant, which leaves
normalised sensitivity fields and their radii unchanged. The blind UNet (backend/models/unet.py) takes
the same (y, σ) and ignores σ.

- `WienerDenoiser`: the optimal linear denoiser, x̂ = μ + W(y − μ), W = U diag(λ/(λ+σ²)) Uᵀ from the data
  covariance Σ = U diag(λ) Uᵀ (unbiased, n − 1); the paper's LLt with ᾱλ/(1−ᾱ+ᾱλ) = λ/(λ+σ²).
- `EmpiricalOptimalDenoiser`: the exact posterior mean under the training set's empirical distribution,
  x̂ = Σₙ softmaxₙ(−‖y − xₙ‖²/2σ²) xₙ, one global softmax over the whole set (the official code's
  per-batch softmax averages batch means instead, METHODS' caveat).
- `LocalityDenoiser` (`PCALocalityDenoiser`): for each output pixel m, the same softmax restricted to the
  input pixels i whose normalised Wiener weight |W_im / W_ii| is at least τ·max|M|.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from backend.data import load_dataset
from backend.data.denoise_sets import gray_tensor
from backend.models.registry import ModelEntry, ProgressFn, register_model

CITATION = (
    "Lukoianov, Yuan, Sitzmann, Solomon et al., Locality in Image Diffusion Models Emerges from Data "
    "Statistics (arXiv 2509.09672)"
)
SIDE = 16
PIXELS = SIDE * SIDE
# Mask threshold τ of the locality denoiser: the repo's CelebA-HQ default (0.005 MNIST, 0.05 CIFAR-10).
TAU = 0.02
TRAIN_N = 2000  # training images the empirical denoisers hold (all of faces16 and digits16)
SETS = {"patches": "patches16", "faces": "faces16", "digits": "digits16", "disks": "disks16"}


def _sigma(sigma: Any, like: torch.Tensor) -> torch.Tensor:
    """σ as a (B, 1) tensor for a batch (B, ...): from a float, or a tensor of B or 1 values."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device).reshape(-1, 1)
    return s.expand(like.shape[0], 1) if s.shape[0] == 1 else s


def covariance(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of x (N, D), in float64."""
    x = x.double()
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (len(x) - 1)


def wiener_gain(eigvals: torch.Tensor, eigvecs: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """W(σ) = U diag(λ/(λ+σ²)) Uᵀ, (B, D, D), from eigenvalues (D,), eigenvectors (D, D), σ (B, 1)."""
    lam = eigvals.clamp_min(0).to(sigma.dtype)
    u = eigvecs.to(sigma.dtype)
    shrink = lam / (lam + sigma**2)  # (B, D)
    return (u[None] * shrink[:, None, :]) @ u.T


class _FromData(nn.Module):
    """Buffers filled by `fit`: the training images (N, D), their mean and covariance eigenbasis."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("data", torch.zeros(1, PIXELS))
        self.register_buffer("mean", torch.zeros(PIXELS))
        self.register_buffer("eigvals", torch.zeros(PIXELS))
        self.register_buffer("eigvecs", torch.eye(PIXELS))

    def fit(self, x: torch.Tensor) -> None:
        """x (N, 1, 16, 16) in [0, 1]."""
        flat = x.reshape(len(x), -1).float()
        mu, cov = covariance(flat)
        lam, u = torch.linalg.eigh(cov)
        self.data = flat.clone()
        self.mean.copy_(mu.float())  # type: ignore[operator]
        self.eigvals.copy_(lam.float())  # type: ignore[operator]
        self.eigvecs.copy_(u.float())  # type: ignore[operator]

    def gain(self, sigma: torch.Tensor) -> torch.Tensor:
        return wiener_gain(self.eigvals, self.eigvecs, sigma)  # type: ignore[arg-type]


class WienerDenoiser(_FromData):
    def forward(self, y: torch.Tensor, sigma: Any) -> torch.Tensor:  # (B, 1, 16, 16) -> (B, 1, 16, 16)
        flat = y.reshape(len(y), -1)
        w = self.gain(_sigma(sigma, flat))  # (B, D, D)
        mu: torch.Tensor = self.mean  # type: ignore[assignment]
        out = mu + torch.einsum("bij,bj->bi", w, flat - mu)
        return out.reshape(y.shape)


def _softmax_average(logits: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Σₙ softmaxₙ(logits) xₙ with one global softmax: logits (B, N[, D]), data (N, D) -> (B, D)."""
    w = torch.softmax(logits, dim=1)
    if w.dim() == 2:
        return w @ data
    return torch.einsum("bnd,nd->bd", w, data)


def _sq_dist(flat: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """(B, N) squared distances ‖y_b − x_n‖², exact (no ‖a‖²+‖b‖²−2ab cancellation at low noise)."""
    return ((flat[:, None, :] - data[None]) ** 2).sum(-1)


class EmpiricalOptimalDenoiser(_FromData):
    def forward(self, y: torch.Tensor, sigma: Any) -> torch.Tensor:
        flat = y.reshape(len(y), -1)
        data: torch.Tensor = self.data  # type: ignore[assignment]
        s = _sigma(sigma, flat)
        logits = -_sq_dist(flat, data) / (2 * s**2)  # (B, N)
        return _softmax_average(logits, data).reshape(y.shape)

    @torch.no_grad()
    def weights(self, y: torch.Tensor, sigma: Any) -> torch.Tensor:
        """Posterior weight of each training image, (B, N)."""
        flat = y.reshape(len(y), -1)
        return torch.softmax(-_sq_dist(flat, self.data) / (2 * _sigma(sigma, flat) ** 2), 1)  # type: ignore[arg-type]


class LocalityDenoiser(_FromData):
    """Per-pixel empirical optimal denoiser restricted to a data-derived neighbourhood (METHODS §6a)."""

    tau: float = TAU

    def mask(self, sigma: torch.Tensor) -> torch.Tensor:
        """(B, D, D) binary M_im: input pixel i enters output pixel m's softmax."""
        w = self.gain(sigma)  # (B, D, D)
        m = w / torch.diagonal(w, dim1=1, dim2=2)[:, :, None]  # row i divided by W_ii
        peak = m.abs().amax(dim=(1, 2), keepdim=True)
        return (m.abs() >= self.tau * peak).to(w.dtype)

    def forward(self, y: torch.Tensor, sigma: Any) -> torch.Tensor:
        flat = y.reshape(len(y), -1)
        data: torch.Tensor = self.data  # type: ignore[assignment]
        s = _sigma(sigma, flat)
        d2 = (flat[:, None, :] - data[None]) ** 2  # (B, N, D)
        if bool((s == s[0]).all()):  # one σ for the batch (the labs' case): one mask, one matmul
            logits = -(d2 @ self.mask(s[:1])[0]) / (2 * s[0] ** 2)  # (B, N, D)
        else:
            logits = -torch.bmm(d2, self.mask(s)) / (2 * s[:, :, None] ** 2)
        return _softmax_average(logits, data).reshape(y.shape)

    def forward_pixel(self, y: torch.Tensor, sigma: float, m: int) -> torch.Tensor:
        """x̂_m alone, (B,): the same softmax for one output pixel, at 1/D of the full cost (for gradients)."""
        flat = y.reshape(len(y), -1)
        data: torch.Tensor = self.data  # type: ignore[assignment]
        s = _sigma(sigma, flat)[:1]
        col = self.mask(s)[0][:, m]  # (D,): the input pixels in output pixel m's neighbourhood
        d2 = (flat[:, None, :] - data[None]) ** 2  # (B, N, D)
        w = torch.softmax(-(d2 @ col) / (2 * s[0, 0] ** 2), dim=1)  # (B, N)
        return w @ data[:, m]


def _fit_from(dataset: str) -> Callable[[nn.Module, ProgressFn], None]:
    def fit(model: nn.Module, progress: ProgressFn) -> None:
        progress(0.0, f"loading {dataset}")
        x = gray_tensor(load_dataset(dataset, "train", n=TRAIN_N, seed=0).images)
        progress(0.5, f"covariance of {len(x)} images")
        assert isinstance(model, _FromData)
        model.fit(x)
        progress(1.0, "done")

    return fit


KINDS: dict[str, tuple[type[_FromData], str]] = {
    "wiener": (
        WienerDenoiser,
        "Optimal linear (Wiener) denoiser in closed form from the covariance of {d}: its sensitivity field "
        "is a row of U diag(λ/(λ+σ²)) Uᵀ.",
    ),
    "optimal": (
        EmpiricalOptimalDenoiser,
        "Empirical optimal denoiser: the exact posterior mean over the {d} training images (one global "
        "softmax). It memorises: at low noise it returns the nearest training image.",
    ),
    "locality": (
        LocalityDenoiser,
        "Analytical locality denoiser (Lukoianov et al.): a per-pixel softmax over {d} training images "
        f"restricted to pixels whose Wiener weight is at least τ = {TAU} of the largest.",
    ),
}


def _entry(kind: str, key: str, dataset: str) -> ModelEntry:
    cls, text = KINDS[kind]
    return ModelEntry(
        name=f"{kind}-{key}",
        family=kind,
        task="denoise",
        dataset=dataset,
        builder=cls,  # `fit` resizes the data buffer to the training set
        input_size=(1, SIDE, SIDE),
        mean=(0.0,),
        std=(1.0,),
        description=text.format(d=dataset),
        citation=CITATION,
        source="computed",
        compute=_fit_from(dataset),
    )


for _kind in KINDS:
    for _key, _dataset in SETS.items():
        register_model(_entry(_kind, _key, _dataset))
