"""Top-k class probabilities, for one or several models side by side.

The simplest lab, and the vertical slice that proves the whole path: upload -> queue -> worker ->
trained model -> Plotly figure. Optional test-time augmentation (random shifts and flips) shows how
stable each model's answer is when the image moves a little: a CNN's translation equivariance and a
ViT's patch grid react differently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from backend import plots
from backend.labs.base import Lab, LabContext, LabParams, LabResult, register_lab
from backend.models.preprocess import preprocess

MAX_AUGMENTED_IMAGES = 20_000  # tta_samples × models: keeps one job near a minute and a half on a CPU


class PredictParams(LabParams):
    top_k: int = Field(default=5, ge=1, le=20, description="How many of the most likely classes to show")
    tta_samples: int = Field(
        default=0,
        ge=0,
        le=20000,
        description="Test-time augmentation: also average the prediction over this many randomly shifted "
        "and flipped copies (0 = off)",
    )
    max_shift: int = Field(
        default=4, ge=0, le=16, description="Largest random shift in pixels for augmentation"
    )
    seed: int = Field(default=0, ge=0, description="Random seed for the augmentations")


def augment(x: torch.Tensor, n: int, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """n copies of x (1, C, H, W), each rolled by a random (dy, dx) and flipped left-right at random."""
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    out = []
    for (dy, dx), flip in zip(shifts.tolist(), flips.tolist(), strict=True):
        y = torch.roll(x[0], shifts=(dy, dx), dims=(1, 2))
        out.append(y.flip(-1) if flip else y)
    return torch.stack(out)


@register_lab
class PredictLab(Lab):
    name = "predict"
    title = "Predict"
    description = "Top-k class probabilities of each model for the same image."
    Params = PredictParams
    default_models = ("cnn-shapes", "convit-shapes", "deit-shapes")

    def cost_problems(self, params: Any, models: list[str]) -> list[str]:
        # About 20 s per 1,000 augmentations on four models on one CPU thread (measured).
        work = params.tta_samples * len(models)
        if work > MAX_AUGMENTED_IMAGES:
            return [f"augmentations × models is {work:,}; at most {MAX_AUGMENTED_IMAGES:,}"]
        return []

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        assert ctx.image is not None
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        n_models = len(ctx.models)
        for i, m in enumerate(ctx.models):
            ctx.progress(i / n_models, f"running {m.name}")
            x = preprocess(ctx.image, m.module).to(ctx.device)
            with torch.no_grad():
                probs = torch.softmax(m.module(x).float(), dim=-1)[0].cpu().numpy()
                tta = self._tta(ctx, m.module, x, params, i, n_models) if params.tta_samples else None
            k = min(params.top_k, probs.shape[0])
            top = np.argsort(-probs)[:k]
            per_model[m.name] = {"classes": [m.entry.class_names[j] for j in top], "probs": probs[top]}
            metrics[m.name] = {"top1": m.entry.class_names[top[0]], "confidence": float(probs[top[0]])}
            if tta is not None:
                per_model[m.name]["tta_probs"] = tta[top]
                agree = float(tta[top[0]])
                metrics[m.name]["tta_mean_prob_of_top1"] = agree
        text = "; ".join(f"{n}: {v['top1']} ({v['confidence']:.0%})" for n, v in metrics.items())
        return LabResult(arrays={"per_model": per_model}, metrics=metrics, text=text)

    @staticmethod
    def _tta(
        ctx: LabContext, model: torch.nn.Module, x: torch.Tensor, params: Any, i: int, n_models: int
    ) -> np.ndarray:
        gen = torch.Generator().manual_seed(params.seed)
        total, batch = params.tta_samples, 64
        acc = torch.zeros(())
        for start in range(0, total, batch):
            n = min(batch, total - start)
            xb = augment(x.cpu(), n, params.max_shift, gen).to(ctx.device)
            p = torch.softmax(model(xb).float(), dim=-1).sum(0).cpu()
            acc = acc + p
            ctx.progress((i + (start + n) / total) / n_models, f"{start + n}/{total} augmentations")
        return (acc / total).numpy()

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        figs = []
        for name, r in result.arrays["per_model"].items():
            series = {"this image": r["probs"]}
            if "tta_probs" in r:
                series[f"mean over {params.tta_samples} shifted/flipped copies"] = r["tta_probs"]
            figs.append(
                plots.grouped_bars(
                    r["classes"],
                    series,
                    f"{name}: top-{len(r['classes'])} classes",
                    yaxis_title="probability",
                    horizontal=True,
                )
            )
        return figs
