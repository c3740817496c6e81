"""Where do the models look? GradCAM and Integrated Gradients side by side, each with a sanity baseline.

For each chosen model (CNN, DeiT-like ViT, ConViT, MLP-Mixer, MLP) and the same image:

- GradCAM (Selvaraju et al., ICCV 2017) at the family's target layer (last conv stage; the input of a
  ViT's last attention; ConViT's last GPSA block; the Mixer's last block), with ReLU as in the paper,
  upsampled to the image. Token models are reshaped to a grid only while captum runs (METHODS.md §3).
- Integrated Gradients (Sundararajan et al., ICML 2017), summed over colour channels, with its convergence
  delta Σ IG − (F(x) − F(x′)) reported. Default baseline: a blurred copy of the image, because the zoo models
  standardise each image and a constant (black) image sits on a kink of that map (large deltas).
- Next to each map, the same method on a copy of the model whose weights were re-initialised (Adebayo et
  al., NeurIPS 2018): a map that barely changes says more about the architecture and the image than
  about what the model learned. Their Spearman rank correlation is reported.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from scipy.stats import spearmanr
from torchvision.transforms.functional import gaussian_blur

from backend import plots
from backend.labs.base import Lab, LabContext, LabParams, LabResult, register_lab
from backend.labs.saliency import cam_target, gradcam, integrated_gradients, randomised_copy
from backend.models.preprocess import data_config, display_image, preprocess


class AttributionParams(LabParams):
    target_class: int = Field(
        default=-1, ge=-1, le=100000, description="Class to explain (-1 = each model's own prediction)"
    )
    ig_steps: int = Field(default=32, ge=4, le=512, description="Integration steps of Integrated Gradients")
    ig_baseline: Literal["blurred", "black", "zero"] = Field(
        default="blurred",
        description="Integrated Gradients baseline: a strongly blurred copy of the image, a black image, "
        "or an all-zero model input. The zoo models standardise each image, so a constant (black) image is a "
        "degenerate point: watch the convergence delta grow",
    )
    sanity_check: bool = Field(
        default=True, description="Also run each method on a copy of the model with randomised weights"
    )
    seed: int = Field(default=0, ge=0, description="Seed of the weight randomisation")


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman ρ between two maps, or None when either is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


@register_lab
class AttributionLab(Lab):
    name = "attribution"
    title = "GradCAM and Integrated Gradients"
    description = (
        "GradCAM and Integrated Gradients for CNN, ViT, ConViT and MLP-Mixer on the same image, each next to "
        "the same map from a weight-randomised copy (a sanity check)."
    )
    Params = AttributionParams
    model_families = ("cnn", "robust-cnn", "vit", "convit", "mixer", "mlp")
    max_models = 5
    default_models = ("cnn-shapes", "deit-shapes", "convit-shapes", "mixer-shapes")

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        if ctx.image is None:
            raise ValueError("the attribution lab needs an image")
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        n = len(ctx.models)
        for mi, m in enumerate(ctx.models):
            base, span = mi / n, 1 / n
            model = m.module
            x = preprocess(ctx.image, model).to(ctx.device)
            with torch.no_grad():
                probs = torch.softmax(model(x).float(), -1)[0]
            num_classes = probs.shape[0]
            cls = (
                int(probs.argmax()) if params.target_class < 0 else min(params.target_class, num_classes - 1)
            )
            baseline = self._baseline(model, x, params.ig_baseline)
            with torch.no_grad():
                f_x, f_b = float(model(x)[0, cls]), float(model(baseline)[0, cls])
            target = cam_target(m.entry, model)
            r: dict[str, Any] = {
                "image": display_image(ctx.image, model),
                "class": m.entry.class_names[cls],
                "prob": float(probs[cls]),
                "cam_layer": target.path or None,
            }
            ctx.progress(base + 0.05 * span, f"{m.name}: GradCAM")
            if target.path:
                r["cam"] = gradcam(model, target, x, cls)[0, 0].cpu().numpy()
            ctx.progress(base + 0.2 * span, f"{m.name}: Integrated Gradients ({params.ig_steps} steps)")
            ig, delta = integrated_gradients(model, x, baseline, cls, params.ig_steps)
            r["ig"] = ig[0].sum(0).cpu().numpy()
            r["ig_delta"] = delta
            r["ig_sum"] = float(ig.sum())
            r["f_x_minus_f_baseline"] = f_x - f_b
            mm: dict[str, Any] = {
                "explained_class": r["class"],
                "probability": round(r["prob"], 4),
                "gradcam_layer": r["cam_layer"],
                "ig_convergence_delta": delta,
                "ig_sum": r["ig_sum"],
                "logit_x_minus_logit_baseline": r["f_x_minus_f_baseline"],
                "ig_relative_delta": delta / max(abs(r["f_x_minus_f_baseline"]), 1e-12),
            }
            if params.sanity_check:
                ctx.progress(base + 0.5 * span, f"{m.name}: sanity check on randomised weights")
                rand = randomised_copy(model, params.seed).to(ctx.device)
                if target.path:
                    r["cam_random"] = gradcam(rand, target, x, cls)[0, 0].cpu().numpy()
                    mm["gradcam_rank_corr_vs_random"] = rank_correlation(r["cam"], r["cam_random"])
                ctx.progress(base + 0.7 * span, f"{m.name}: IG on randomised weights")
                ig_r, delta_r = integrated_gradients(
                    rand, x, self._baseline(rand, x, params.ig_baseline), cls, params.ig_steps
                )
                r["ig_random"] = ig_r[0].sum(0).cpu().numpy()
                mm["ig_random_convergence_delta"] = delta_r
                mm["ig_abs_rank_corr_vs_random"] = rank_correlation(np.abs(r["ig"]), np.abs(r["ig_random"]))
                del rand
            per_model[m.name] = r
            metrics[m.name] = mm
        text = "; ".join(
            f"{name}: explaining '{r['class']}' ({r['prob']:.0%}), IG delta {r['ig_delta']:.1e}"
            for name, r in per_model.items()
        )
        loose = [n for n, mm in metrics.items() if mm["ig_relative_delta"] > 0.05]
        if loose:
            text += (
                f". IG has not converged for {', '.join(loose)} (delta above 5% of the score change): "
                "raise ig_steps"
            )
        return LabResult(arrays={"per_model": per_model}, metrics=metrics, text=text + ".")

    @staticmethod
    def _baseline(model: torch.nn.Module, x: torch.Tensor, kind: str) -> torch.Tensor:
        if kind == "zero":
            return torch.zeros_like(x)
        if (
            kind == "blurred"
        ):  # Sturmfels et al., Distill 2020, "Visualizing the impact of feature attribution baselines"
            sigma = max(x.shape[-2:]) / 8
            k = min(2 * math.ceil(3 * sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
            return gaussian_blur(x, [k, k], [sigma, sigma]).contiguous()
        cfg = data_config(model)  # black pixels through the model's own normalisation
        mean = torch.tensor(cfg["mean"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(cfg["std"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((torch.zeros_like(x) - mean) / std).contiguous()

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        per_model = result.arrays["per_model"]
        cam_panels: list[tuple[str, np.ndarray | None, np.ndarray]] = []
        ig_panels: list[tuple[str, np.ndarray | None, np.ndarray]] = []
        for name, r in per_model.items():
            if "cam" in r:
                cam_panels.append((f"{name} → {r['class']}", r["image"], r["cam"]))
                if "cam_random" in r:
                    cam_panels.append((f"{name}: randomised weights", r["image"], r["cam_random"]))
            ig_panels.append((f"{name} (Δ = {r['ig_delta']:.1e})", r["image"], r["ig"]))
            if "ig_random" in r:
                ig_panels.append((f"{name}: randomised weights", r["image"], r["ig_random"]))
        cols = 4 if params.sanity_check else min(4, len(per_model))
        figs = []
        if cam_panels:
            figs.append(plots.overlay_grid(cam_panels, "GradCAM (ReLU, upsampled) per model", cols=cols))
        figs.append(
            plots.overlay_grid(
                ig_panels,
                f"Integrated Gradients ({params.ig_steps} steps, {params.ig_baseline} baseline), "
                "summed over colour",
                signed=True,
                cols=cols,
            )
        )
        if params.sanity_check:
            names = list(per_model)
            cam_rho = [result.metrics[n].get("gradcam_rank_corr_vs_random") for n in names]
            ig_rho = [result.metrics[n].get("ig_abs_rank_corr_vs_random") for n in names]
            figs.append(
                plots.grouped_bars(
                    names,
                    {
                        "GradCAM": [v if v is not None else 0.0 for v in cam_rho],
                        "|IG|": [v if v is not None else 0.0 for v in ig_rho],
                    },
                    "Sanity check: rank correlation between each map and its randomised-weights twin "
                    "(high = the map does not depend on what was learned)",
                    yaxis_title="Spearman ρ",
                    yrange=(-1.0, 1.0),
                )
            )
        return figs
