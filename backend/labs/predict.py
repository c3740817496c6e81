"""Top-k class probabilities, for one or several models side by side.

The simplest lab, and the vertical slice that proves the whole path: upload -> queue -> worker ->
trained model -> Plotly figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from backend import plots
from backend.labs.base import Lab, LabContext, LabParams, LabResult, register_lab
from backend.models.preprocess import preprocess


class PredictParams(LabParams):
    top_k: int = Field(default=5, ge=1, le=20, description="How many of the most likely classes to show")


@register_lab
class PredictLab(Lab):
    name = "predict"
    title = "Predict"
    description = "Top-k class probabilities of each model for the same image."
    Params = PredictParams
    default_models = ("cnn-shapes", "convit-shapes", "deit-shapes")

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        assert ctx.image is not None
        per_model: dict[str, dict[str, Any]] = {}
        for i, m in enumerate(ctx.models):
            ctx.progress(i / len(ctx.models), f"running {m.name}")
            x = preprocess(ctx.image, m.module).to(ctx.device)
            with torch.no_grad():
                probs = torch.softmax(m.module(x).float(), dim=-1)[0].cpu().numpy()
            k = min(params.top_k, probs.shape[0])
            top = np.argsort(-probs)[:k]
            per_model[m.name] = {
                "classes": [m.entry.class_names[j] for j in top],
                "probs": probs[top],
            }
        metrics = {
            name: {"top1": r["classes"][0], "confidence": float(r["probs"][0])} for name, r in per_model.items()
        }
        text = "; ".join(f"{n}: {v['top1']} ({v['confidence']:.0%})" for n, v in metrics.items())
        return LabResult(arrays={"per_model": per_model}, metrics=metrics, text=text)

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        figs = []
        for name, r in result.arrays["per_model"].items():
            figs.append(
                plots.grouped_bars(
                    r["classes"],
                    {name: r["probs"]},
                    f"{name}: top-{len(r['classes'])} classes",
                    yaxis_title="probability",
                    horizontal=True,
                )
            )
        return figs
