"""Diffusion locality: where each denoiser looks, and whether that comes from the data or the network.

Lukoianov et al., "Locality in Image Diffusion Models Emerges from Data Statistics" (arXiv 2509.09672);
METHODS.md §6a. For one output pixel p and noise level σ, the sensitivity field |∂x̂_p/∂y| of each
denoiser of one dataset (the trained bias-free UNet, the Wiener filter, the analytical locality
denoiser, the empirical optimal denoiser), averaged over noisy test images, on one colour scale; the
radius holding 90 % of each field's mass at every σ; and how closely the UNet's x̂ matches each
closed-form denoiser (MSE and R²). Switch the dataset: on natural patches the fields are local blobs,
on faces and digits they take the shape of the data's principal components.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from backend import plots
from backend.data import load_dataset
from backend.data.denoise_sets import gray_tensor
from backend.labs import denoising as dn
from backend.labs.base import Lab, LabContext, LabParams, LabResult, register_lab


class LocalityParams(LabParams):
    dataset: Literal["patches", "faces", "digits", "disks"] = Field(
        default="patches",
        description="The data every denoiser was trained on or computed from: natural-image patches, "
        "faces, handwritten digits or procedural disks",
    )
    sigma: dn.Sigma = Field(
        default=dn.Sigma.S02, title="Noise level σ", description="Noise of the fields shown (x in [0, 1])"
    )
    row: int = Field(default=8, ge=0, le=15, description="Output pixel: row")
    col: int = Field(default=8, ge=0, le=15, description="Output pixel: column")
    mass: float = Field(
        default=0.9,
        ge=0.5,
        le=0.99,
        title="Mass fraction of the radius",
        description="The radius chart "
        "shows the distance within which this share of |∂x̂/∂y| lies (0.9 = the 90 % radius)",
    )
    n_images: int = Field(
        default=4, ge=1, le=16, description="Noisy test images the fields are averaged over, and compared on"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Which test images and which noise")


@register_lab
class DiffusionLocalityLab(Lab):
    name = "diffusion-locality"
    title = "Diffusion locality"
    description = (
        "Sensitivity fields of diffusion denoisers: a trained bias-free UNet against the Wiener filter, "
        "the analytical locality denoiser and the empirical optimal denoiser, on four datasets."
    )
    Params = LocalityParams
    model_tasks = ()
    needs_image = False
    max_models = 0  # the dataset switch picks the four denoisers of that dataset

    def run(self, ctx: LabContext, params: LocalityParams) -> LabResult:  # type: ignore[override]
        if ctx.load_model is None:
            raise RuntimeError("this lab loads its denoisers itself and needs a model loader")
        dataset = dn.DATASETS[params.dataset]
        pixel = (params.row, params.col)
        x = gray_tensor(load_dataset(dataset, "test", n=params.n_images, seed=params.seed).images)
        models = {}
        for i, kind in enumerate(dn.KINDS):
            ctx.progress(0.1 * i / len(dn.KINDS), f"building {kind}-{params.dataset}")
            models[kind] = ctx.load_model(f"{kind}-{params.dataset}").module.to(ctx.device).eval()
        x = x.to(ctx.device)
        fields: dict[str, dict[str, np.ndarray]] = {k: {} for k in models}
        radius: dict[str, list[float]] = {k: [] for k in models}
        # The 90 % radius (the summary) and the 50 % one, which a faint tail over the whole patch
        # (the patch mean, finite-sample noise) does not move: both are reported whatever `mass` shows.
        fixed: dict[str, dict[str, list[float]]] = {f: {k: [] for k in models} for f in ("0.5", "0.9")}
        outputs: dict[float, dict[str, np.ndarray]] = {}
        for j, sigma in enumerate(dn.SIGMAS):
            ctx.progress(0.1 + 0.9 * j / len(dn.SIGMAS), f"σ = {sigma}")
            y = dn.noisy(x.cpu(), sigma, params.seed + j).to(ctx.device)
            outputs[sigma] = {}
            for kind, model in models.items():
                field = dn.sensitivity(model, y, sigma, pixel).mean(0).cpu().numpy()  # (H, W)
                fields[kind][f"{sigma:g}"] = field
                radius[kind].append(dn.mass_radius(field, pixel, params.mass))
                for f in fixed:
                    fixed[f][kind].append(dn.mass_radius(field, pixel, float(f)))
                with torch.no_grad():
                    outputs[sigma][kind] = model(y, sigma).cpu().numpy()
        agreement = self._agreement(outputs, x.cpu().numpy())
        metrics: dict[str, Any] = {
            "dataset": dataset,
            "pixel": list(pixel),
            "sigmas": list(dn.SIGMAS),
            "mass_fraction": params.mass,
            "radius": radius,
            "uniform_radius": dn.uniform_radius(pixel, params.mass),
            "radius50": fixed["0.5"],
            "radius90": fixed["0.9"],
            "unet_vs": agreement,
        }
        return LabResult(
            arrays={"fields": fields, "radius": radius, "mean_image": x.mean(0)[0].cpu().numpy()},
            metrics=metrics,
            text=self._sentence(params, radius, agreement),
        )

    @staticmethod
    def _agreement(outputs: dict[float, dict[str, np.ndarray]], clean: np.ndarray) -> dict[str, Any]:
        """UNet x̂ against each closed-form x̂ (MSE, R²) per σ, and every denoiser's MSE to the clean image."""
        out: dict[str, Any] = {k: {"mse": [], "r2": []} for k in dn.KINDS if k != "unet"}
        out["mse_to_clean"] = {k: [] for k in dn.KINDS}
        for sigma in dn.SIGMAS:
            unet = outputs[sigma]["unet"]
            for kind, xhat in outputs[sigma].items():
                out["mse_to_clean"][kind].append(float(((xhat - clean) ** 2).mean()))
                if kind != "unet":
                    out[kind]["mse"].append(float(((unet - xhat) ** 2).mean()))
                    out[kind]["r2"].append(dn.r2_score(unet, xhat))
        return out

    @staticmethod
    def _sentence(params: LocalityParams, radius: dict[str, list[float]], agreement: dict[str, Any]) -> str:
        k = dn.SIGMAS.index(params.sigma)
        radii = ", ".join(f"{dn.KIND_LABEL[m]} {r[k]:.1f}" for m, r in radius.items())
        best = max((m for m in agreement if m != "mse_to_clean"), key=lambda m: agreement[m]["r2"][k])
        return (
            f"On {params.dataset} at σ = {params.sigma}, {params.mass:.0%} of pixel "
            f"({params.row}, {params.col})'s "
            f"sensitivity lies within {radii} pixels. The UNet's output is closest to the "
            f"{dn.KIND_LABEL[best]} denoiser (R² = {agreement[best]['r2'][k]:.3f})."
        )

    def figures(self, result: LabResult, params: LocalityParams) -> list[dict[str, Any]]:  # type: ignore[override]
        fields = result.arrays["fields"]
        key = f"{params.sigma:g}"
        pixel = (params.row, params.col)
        panels = [(dn.KIND_LABEL[k], None, fields[k][key], pixel) for k in fields]
        metrics = result.metrics
        figs = [
            plots.overlay_grid_marked(
                panels,
                f"Sensitivity |∂x̂/∂y| of one output pixel at σ = {params.sigma} ({params.dataset})",
                scale="shared",
                cols=2,
                marker_label="output pixel",
                colorbar_title="|∂x̂/∂y|",
                notice="Each map shows which noisy input pixels move the marked output pixel. Natural "
                "patches give compact blobs for every denoiser; faces and digits give spread, face- or "
                "stroke-shaped fields: the shape comes from the data, not from convolutions.",
            )
        ]
        sigmas = list(metrics["sigmas"])
        figs.append(
            plots.line_chart(
                sigmas,
                {dn.KIND_LABEL[k]: v for k, v in result.arrays["radius"].items()},
                f"Radius holding {params.mass:.0%} of the sensitivity, against noise level",
                xaxis_title="noise level σ",
                yaxis_title="radius (pixels)",
                log_x=True,
                x_ticks=sigmas,
                references={"spread evenly over the image": metrics["uniform_radius"]},
                notice="At high σ a denoiser must average over more pixels, so fields tend to grow with the "
                "noise. A line near the dashed reference means the field covers the whole image.",
            )
        )
        agree = metrics["unet_vs"]
        figs.append(
            plots.line_chart(
                sigmas,
                {f"UNet vs {dn.KIND_LABEL[k]}": agree[k]["r2"] for k in dn.KINDS if k != "unet"},
                "How well each closed-form denoiser predicts the trained UNet's output (R² of x̂)",
                xaxis_title="noise level σ",
                yaxis_title="R² (1 = identical outputs)",
                log_x=True,
                x_ticks=sigmas,
                references={"R² = 1": 1.0},
                notice="R² near 1 means the UNet's output is explained by that closed-form denoiser. The "
                "empirical optimal denoiser memorises its training images, so on new images the UNet "
                "departs from it most at high noise.",
            )
        )
        return figs
