"""Computations shared by the denoiser labs (METHODS.md §6): sensitivity fields, locality radii, model
agreement, Jacobians and a sampler. Pure functions of tensors; no plotting and no job machinery.

Every denoiser takes (y, σ) with y = x + σz and x in [0, 1] (backend/models/denoisers.py) and returns
x̂ with the shape of y, (B, 1, 16, 16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
from PIL import Image
from torch import nn

SIGMAS = (0.05, 0.1, 0.2, 0.4, 0.8)  # noise levels every chart is drawn at (x in [0, 1])


class Sigma(float, Enum):
    """One of SIGMAS, as a parameter: a dropdown in the UI, a number in the API."""

    S005 = 0.05
    S01 = 0.1
    S02 = 0.2
    S04 = 0.4
    S08 = 0.8

    def __str__(self) -> str:
        return f"{self.value:g}"

    def __format__(self, spec: str) -> str:
        return format(self.value, spec or "g")


SIDE = 16
KINDS = ("unet", "wiener", "locality", "optimal")  # the four denoisers of each dataset
DATASETS = {"patches": "patches16", "faces": "faces16", "digits": "digits16", "disks": "disks16"}
KIND_LABEL = {
    "unet": "bias-free UNet (trained)",
    "wiener": "Wiener (linear)",
    "locality": "analytical locality",
    "optimal": "empirical optimal",
}


def sensitivity(model: nn.Module, y: torch.Tensor, sigma: float, pixel: tuple[int, int]) -> torch.Tensor:
    """|∂x̂_p/∂y| for output pixel p at each input y (B, 1, H, W): (B, H, W).

    One backward pass: each sample's output depends only on its own input (no batch statistics), so
    the gradient of Σ_b x̂_b,p holds every sample's row of its Jacobian.
    """
    y = y.detach().clone().requires_grad_(True)
    one_pixel = getattr(model, "forward_pixel", None)  # the locality denoiser: one pixel is far cheaper
    if callable(one_pixel):
        out = one_pixel(y, sigma, pixel[0] * y.shape[-1] + pixel[1])
    else:
        out = model(y, sigma)[:, 0, pixel[0], pixel[1]]
    (grad,) = torch.autograd.grad(out.sum(), y)
    return grad[:, 0].abs().detach()


def mass_radius(field: np.ndarray, pixel: tuple[int, int], fraction: float = 0.9) -> float:
    """Smallest distance r (pixels) from `pixel` such that the pixels within r hold `fraction` of Σ|field|."""
    h, w = field.shape
    rr, cc = np.mgrid[0:h, 0:w]
    dist = np.hypot(rr - pixel[0], cc - pixel[1]).ravel()
    mass = np.abs(field).ravel()
    total = mass.sum()
    if total <= 0:
        return float("nan")
    order = np.argsort(dist, kind="stable")
    cum = np.cumsum(mass[order]) / total
    # Pixels at one distance enter together: the radius is a distance at which the ring completes.
    k = int(np.searchsorted(cum, fraction - 1e-12))
    return float(dist[order][k])


def uniform_radius(pixel: tuple[int, int], fraction: float = 0.9, side: int = SIDE) -> float:
    """The 90 % radius of a field spread evenly over the whole image: the "not local at all" reference."""
    return mass_radius(np.ones((side, side)), pixel, fraction)


def r2_score(pred: np.ndarray, target: np.ndarray) -> float:
    """1 − Σ(pred − target)² / Σ(target − mean(target))², over all pixels of all images (sklearn's r2_score
    on the flattened arrays)."""
    t = target.ravel()
    ss_res = float(((pred.ravel() - t) ** 2).sum())
    ss_tot = float(((t - t.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def noisy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return x + sigma * torch.randn(x.shape, generator=gen)


def jacobian(model: nn.Module, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """∂f/∂y at one input y (1, 1, H, W) as a (HW, HW) matrix (row = output pixel), by `torch.func.jacrev`."""
    from torch.func import jacrev

    def f(v: torch.Tensor) -> torch.Tensor:
        return model(v.reshape(y.shape), sigma).reshape(-1)

    return jacrev(f)(y.reshape(-1).detach()).detach()


def to_gray16(image: Image.Image) -> torch.Tensor:
    """A user's image as the denoisers see it: greyscale, resized (area-averaged) to 16×16, (1, 1, 16, 16)."""
    small = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)[None, None]


def sigma_schedule(steps: int, sigma_max: float = 1.0, sigma_min: float = 0.01) -> list[float]:
    """Geometric noise levels from σ_max down to σ_min, `steps` of them."""
    return [float(s) for s in np.geomspace(sigma_max, sigma_min, steps)]


@dataclass
class SamplerStep:
    step: int
    sigma: float
    y: torch.Tensor  # the current noisy state (B, 1, H, W)
    x0: torch.Tensor  # the denoiser's estimate of the clean image at this step


def ddim_sample(
    model: nn.Module,
    start: torch.Tensor,
    sigmas: list[float],
    on_step: Callable[[SamplerStep], None] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (η = 0) in the variance-exploding form: y ← x̂ + (σ_next/σ)(y − x̂).

    The VP DDIM update of Song et al. (ICLR 2021) divided by √ᾱ, so it runs every denoiser in the same
    (y, σ) convention. `start` is y at σ_0; returns the last clean estimate x̂ (B, 1, H, W).
    """
    y = start
    x0 = start
    with torch.no_grad():
        for k, s in enumerate(sigmas):
            x0 = model(y, s)
            nxt = sigmas[k + 1] if k + 1 < len(sigmas) else 0.0
            y = x0 + (nxt / s) * (y - x0)
            if on_step is not None:
                on_step(SamplerStep(k, s, y, x0))
    return x0


def centred_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of mean-subtracted images, row by row: a (B, D), b (B, D) -> (B,).

    Without centring every pair of [0, 1] images scores high (all pixels positive); centred, two
    unrelated images score near 0 and the same image 1.
    """
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, (a * b).sum(1) / np.maximum(den, 1e-12), 0.0)


def nearest(samples: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each sample (B, D), the index of the most similar training image (N, D) and that similarity."""
    s = samples - samples.mean(1, keepdims=True)
    t = train - train.mean(1, keepdims=True)
    s = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    sim = s @ t.T  # (B, N)
    idx = sim.argmax(1)
    return idx, sim[np.arange(len(idx)), idx]


def gray_rgb(x: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) for the image figures."""
    return np.repeat(np.clip(x, 0, 1)[..., None], 3, axis=2)
