"""Sample efficiency: test accuracy against the fraction of training data, ConViT vs DeiT-like ViT vs CNN.

Charts the shipped result of `biaslab zoo sweep` (backend/models/weights/sample_efficiency.json): every
run had the same number of optimiser steps, so smaller fractions mean more passes over fewer images.
d'Ascoli et al. (ConViT, ICML 2021, arXiv 2103.10697) report the ConViT–DeiT gap largest at small
fractions on ImageNet; this lab shows what our own small-scale runs measured, whichever way it came out.
No image and no model is needed: the numbers come from the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from backend import plots
from backend.config import get_settings
from backend.labs.base import Lab, LabContext, LabParams, LabResult, register_lab


class SampleEfficiencyParams(LabParams):
    log_x: bool = Field(default=True, description="Logarithmic data-fraction axis")
    show_std: bool = Field(default=True, description="Error bars: standard deviation over seeds")


def load_sweep() -> dict[str, Any]:
    path = get_settings().weights_dir / "sample_efficiency.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `biaslab zoo sweep`")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@register_lab
class SampleEfficiencyLab(Lab):
    name = "sample-efficiency"
    title = "Sample efficiency"
    description = (
        "Test accuracy vs fraction of training data for ConViT, a DeiT-like ViT and a CNN (shipped sweep)."
    )
    Params = SampleEfficiencyParams
    needs_image = False
    max_models = 0
    model_tasks = ()

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        data = load_sweep()
        ctx.progress(0.5, "read sweep")
        fractions = [float(f) for f in data["fractions"]]
        summary = data["summary"]
        metrics: dict[str, Any] = {
            "dataset": data["dataset"],
            "steps": data["steps"],
            "seeds": len(data["seeds"]),
        }
        for m, s in summary.items():
            metrics[m] = {f"{f:g}": s["mean"][i] for i, f in enumerate(fractions)}
            metrics[m]["params"] = data["models"][m]["params"]
        lo = {m: s["mean"][0] for m, s in summary.items() if s["mean"][0] is not None}
        hi = {m: s["mean"][-1] for m, s in summary.items() if s["mean"][-1] is not None}
        text = (
            f"{data['dataset']}, {data['steps']} steps per run, {len(data['seeds'])} seeds. "
            f"At {fractions[0]:.0%} of the data: "
            + ", ".join(f"{m} {v:.1%}" for m, v in lo.items())
            + f"; at {fractions[-1]:.0%}: "
            + ", ".join(f"{m} {v:.1%}" for m, v in hi.items())
            + "."
        )
        return LabResult(
            arrays={"fractions": fractions, "summary": summary, "models": data["models"]},
            metrics=metrics,
            text=text,
        )

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        fractions = result.arrays["fractions"]
        summary = result.arrays["summary"]
        models = result.arrays["models"]
        label = {m: f"{m} ({models[m]['params'] / 1e3:.0f}k params)" for m in summary}
        series: dict[str, Sequence[float]] = {
            label[m]: [v if v is not None else float("nan") for v in s["mean"]] for m, s in summary.items()
        }
        error: dict[str, Sequence[float]] | None = (
            {label[m]: [v if v is not None else 0.0 for v in s["std"]] for m, s in summary.items()}
            if params.show_std
            else None
        )
        return [
            plots.line_chart(
                [100 * f for f in fractions],
                series,
                "Test accuracy vs training-data fraction (fixed optimiser steps)",
                xaxis_title="% of training data",
                yaxis_title="test accuracy",
                error=error,
                log_x=params.log_x,
            )
        ]
