"""Denoiser basis: the adaptive basis a trained denoiser shrinks in, read off its Jacobian.

Kadkhodaie, Guth, Simoncelli & Mallat, "Generalization in diffusion models arises from geometry-adaptive
harmonic representations" (ICLR 2024, arXiv 2310.02557); METHODS.md §6b. A bias-free denoiser satisfies
f(y) = J(y)·y with J = ∂f/∂y, so f(y) = Σ_k λ_k ⟨e_k, y⟩ e_k in the eigenbasis of J (symmetrised): it keeps
the components along its top eigenvectors and shrinks the rest. The lab computes J by autograd
(`torch.func.jacrev`) at the user's image (greyscale, 16×16) or a test image plus noise, at several noise
levels: the eigenvalue spectrum, the top eigenvectors as images, and trace(J), the "effective
dimensionality" of Mohan et al.'s bias-free CNNs, against the Wiener filter's trace Σλ/(λ+σ²) on the
same data (a linear denoiser's dimensionality at that noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from backend import plots
from backend.data import load_dataset
from backend.data.denoise_sets import gray_tensor
from backend.labs import denoising as dn
from backend.labs.base import Lab, LabContext, LabParams, LabResult, register_lab

TOP = 16  # eigenvectors shown


class BasisParams(LabParams):
    sigma: dn.Sigma = Field(
        default=dn.Sigma.S02,
        title="Noise level σ",
        description="Noise of the eigenvectors shown (x in [0, 1])",
    )
    source: Literal["your image", "test image"] = Field(
        default="your image",
        description="Analyse the chosen image (as 16×16 greyscale), or a test image of the model's dataset",
    )
    test_image: int = Field(default=0, ge=0, le=14, description="Which test image, when analysing one")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="The noise added to the image")


@register_lab
class DenoiserBasisLab(Lab):
    name = "denoiser-basis"
    title = "Denoiser basis"
    description = (
        "The Jacobian of a trained bias-free denoiser at an image: its eigenvalues, its top eigenvectors "
        "(a basis adapted to the image's edges) and its effective dimensionality trace(J) across noise."
    )
    Params = BasisParams
    model_tasks = ("denoise",)
    model_families = ("unet",)
    needs_image = False  # without an image (or with source "test image") a test image is used
    max_models = 2
    default_models = ("unet-patches",)

    def run(self, ctx: LabContext, params: BasisParams) -> LabResult:  # type: ignore[override]
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        for i, m in enumerate(ctx.models):
            ctx.progress(i / len(ctx.models), f"{m.name}: Jacobians")
            x, where = self._clean(ctx, params, m.entry.dataset)
            model = m.module.to(ctx.device).eval()
            wiener = (
                ctx.load_model(f"wiener-{m.entry.dataset.removesuffix('16')}") if ctx.load_model else None
            )
            spectra, traces, wiener_traces, rel_err = [], [], [], []
            shown: dict[str, np.ndarray] = {}
            for j, sigma in enumerate(dn.SIGMAS):
                ctx.progress((i + (j + 1) / len(dn.SIGMAS)) / len(ctx.models), f"{m.name}: σ = {sigma}")
                y = dn.noisy(x, sigma, params.seed + j).to(ctx.device)
                jac = dn.jacobian(model, y, sigma).cpu().double()  # (256, 256)
                sym = (jac + jac.T) / 2
                lam, vec = torch.linalg.eigh(sym)  # ascending
                lam, vec = lam.flip(0), vec.flip(1)
                with torch.no_grad():
                    out = model(y, sigma).reshape(-1).cpu().double()
                # Bias-free: f(y) = J(y)·y. The relative error measures how exactly it holds.
                rel_err.append(float((jac @ y.reshape(-1).cpu().double() - out).norm() / out.norm()))
                spectra.append(lam.numpy())
                traces.append(float(torch.trace(jac)))
                if wiener is not None:
                    gain = wiener.module.gain(torch.tensor([[sigma]]))[0]  # type: ignore[operator]
                    wiener_traces.append(float(torch.trace(gain)))
                if sigma == params.sigma:
                    shown = {
                        "noisy": y[0, 0].cpu().numpy(),
                        "denoised": out.reshape(16, 16).float().numpy(),
                        "vectors": vec[:, :TOP].T.reshape(TOP, 16, 16).float().numpy(),
                        "values": lam[:TOP].numpy(),
                    }
            per_model[m.name] = {"clean": x[0, 0].numpy(), "spectra": spectra, "shown": shown}
            metrics[m.name] = {
                "image": where,
                "like_training_data": self._familiarity(x, m.entry.dataset)
                if ctx.image is not None
                else None,
                "trace_J": traces,
                "wiener_trace": wiener_traces,
                "f_equals_Jy_relative_error": rel_err,
                "top_eigenvalues_at_sigma": [float(v) for v in shown["values"][:5]],
            }
        metrics["sigmas"] = list(dn.SIGMAS)
        return LabResult({"per_model": per_model}, metrics, self._sentence(metrics, params))

    @staticmethod
    def _familiarity(x: torch.Tensor, dataset: str) -> dict[str, Any]:
        """Is the image like the model's training data? Its similarity to the nearest training image,
        against the same similarity for the dataset's own test images (the 5th percentile as threshold)."""
        train = gray_tensor(load_dataset(dataset, "train", n=2000, seed=0).images).reshape(-1, 256).numpy()
        test = gray_tensor(load_dataset(dataset, "test", n=200, seed=0).images).reshape(-1, 256).numpy()
        _, own = dn.nearest(x.reshape(1, -1).numpy(), train)
        _, ref = dn.nearest(test, train)
        threshold = float(np.quantile(ref, 0.05))
        return {
            "nearest_similarity": float(own[0]),
            "threshold": threshold,
            "in_distribution": bool(own[0] >= threshold),
            "method": "nearest training image, cosine of mean-subtracted 16×16 images; threshold: 5th "
            "percentile of the same score on test images",
        }

    @staticmethod
    def _clean(ctx: LabContext, params: BasisParams, dataset: str) -> tuple[torch.Tensor, str]:
        if params.source == "your image" and ctx.image is not None:
            return dn.to_gray16(ctx.image), "your image (16×16 greyscale)"
        test = load_dataset(dataset, "test", n=None, seed=0)
        k = min(params.test_image, len(test) - 1)
        return gray_tensor(test.images[k : k + 1]), f"{dataset} test image {k}"

    @staticmethod
    def _sentence(metrics: dict[str, Any], params: BasisParams) -> str:
        k = dn.SIGMAS.index(params.sigma)
        parts = []
        for name, s in metrics.items():
            if name == "sigmas":
                continue
            wt = s["wiener_trace"]
            fam = s.get("like_training_data")
            if fam and not fam["in_distribution"]:
                parts.append(
                    f"{name}: your image is unlike its training images (nearest similarity "
                    f"{fam['nearest_similarity']:.2f}, below {fam['threshold']:.2f} for 95 % of test "
                    "images), so this basis is the network extrapolating"
                )
            ref = f" (the Wiener filter on its data: {wt[k]:.1f})" if wt else ""
            parts.append(
                f"{name} on {s['image']}: trace(J) = {s['trace_J'][k]:.1f} of 256 dimensions at σ = "
                f"{params.sigma}{ref}; {s['trace_J'][0]:.1f} at σ = {dn.SIGMAS[0]} to "
                f"{s['trace_J'][-1]:.1f} at σ = {dn.SIGMAS[-1]}; f(y) = J(y)·y holds to "
                f"{max(s['f_equals_Jy_relative_error']):.1e}"
            )
        return "; ".join(parts) + "."

    def figures(self, result: LabResult, params: BasisParams) -> list[dict[str, Any]]:  # type: ignore[override]
        per_model = result.arrays["per_model"]
        metrics = result.metrics
        sigmas = metrics["sigmas"]
        figs = []
        images: list[tuple[str, np.ndarray]] = []
        for a in per_model.values():
            images += [
                ("clean", dn.gray_rgb(a["clean"])),
                (f"σ={params.sigma}", dn.gray_rgb(a["shown"]["noisy"])),
                ("f(y)", dn.gray_rgb(a["shown"]["denoised"])),
            ]
        figs.append(
            plots.image_grid(
                images,
                "The 16×16 greyscale image, with noise, and denoised by " + " (row 1) and ".join(per_model),
                cols=3,
                notice="This is exactly what the model analyses: your image reduced to 16×16 grey pixels. "
                "Everything below is the Jacobian at the noisy image.",
            )
        )
        for name, a in per_model.items():
            vals = a["shown"]["values"]
            panels = [(f"λ{k + 1} = {vals[k]:.2f}", None, a["shown"]["vectors"][k]) for k in range(TOP)]
            figs.append(
                plots.overlay_grid(
                    panels,
                    f"{name}: top {TOP} eigenvectors of the Jacobian at σ = {params.sigma}",
                    signed=True,
                    cols=4,
                    scale="shared",
                    colorbar_title="eigenvector",
                    notice="The denoiser keeps these directions (eigenvalue near 1) and shrinks the rest. "
                    "They follow the image's own edges and flat regions: a basis adapted to this image, "
                    "not a fixed Fourier or wavelet basis.",
                )
            )
        ranks = list(range(1, 257))
        series: dict[str, Sequence[float]] = {
            f"{name.removeprefix('unet-')}, σ = {s:g}": [float(v) for v in a["spectra"][j]]
            for name, a in per_model.items()
            for j, s in enumerate(sigmas)
        }
        figs.append(
            plots.line_chart(
                ranks,
                series,
                "Eigenvalues of the Jacobian, largest first, at each noise level",
                xaxis_title="rank",
                yaxis_title="eigenvalue",
                notice="A few eigenvalues near 1 and the rest near 0 mean the denoiser projects onto a "
                "low-dimensional subspace; the subspace shrinks as the noise grows. Negative eigenvalues "
                "show where the trained network is not the symmetric, positive Jacobian of an optimal "
                "denoiser.",
            )
        )
        trace_series = {f"{n}: trace(J)": metrics[n]["trace_J"] for n in per_model}
        for n in per_model:
            if metrics[n]["wiener_trace"]:
                trace_series[f"Wiener on {n.removeprefix('unet-')}: Σλ/(λ+σ²)"] = metrics[n]["wiener_trace"]
        figs.append(
            plots.line_chart(
                sigmas,
                trace_series,
                "Effective dimensionality trace(J) against noise level",
                xaxis_title="noise level σ",
                yaxis_title="trace(J) (of 256)",
                log_x=True,
                x_ticks=sigmas,
                notice="trace(J) counts how many dimensions the denoiser lets through. Compare it with the "
                "best linear denoiser on the same data: an adaptive basis can keep fewer dimensions.",
            )
        )
        return figs
