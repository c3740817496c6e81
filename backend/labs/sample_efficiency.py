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
    log_x: bool = Field(
        default=True,
        title="Stretch the small fractions (log axis)",
        description="Equal steps for 5 → 10 → 25 → 50 → 100 %",
    )
    show_std: bool = Field(
        default=True,
        title="Show the spread over seeds",
        description="Error bars: one standard deviation over the training seeds",
    )


# Chance accuracy of a dataset (1 / number of classes), drawn as the floor of the chart.
CHANCE = {"digits": 0.1, "shapes": 0.125}


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
        text = summary_text(data["dataset"], data["steps"], len(data["seeds"]), fractions, summary)
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
        xs = [100 * f for f in fractions]
        chance = CHANCE.get(str(result.metrics.get("dataset")))
        return [
            plots.line_chart(
                xs,
                series,
                "Test accuracy vs share of the training data (same number of training steps)",
                xaxis_title="share of the training data",
                yaxis_title="test accuracy",
                error=error,
                log_x=params.log_x,
                x_ticks=xs,
                x_tick_suffix=" %",
                yrange=(0.0, 1.02),
                references={f"chance ({chance:.0%})": chance} if chance else None,
                notice="Read from the left: the vertical gap at 5 % is what a built-in prior is worth when "
                "data is scarce. Error bars are the spread over seeds; gaps smaller than them are not a "
                "difference.",
            )
        ]


def summary_text(
    dataset: str, steps: int, seeds: int, fractions: list[float], summary: dict[str, Any]
) -> str:
    """Plain sentences: who is best with the least and with all the data, and by how much."""

    def at(i: int) -> list[tuple[str, float, float]]:
        rows = [(m, s["mean"][i], s["std"][i]) for m, s in summary.items() if s["mean"][i] is not None]
        return sorted(rows, key=lambda r: -r[1])

    parts = [f"Each model was trained on {dataset} for {steps} steps, {seeds} seeds per point."]
    for i in (0, len(fractions) - 1):
        rows = at(i)
        if not rows:
            continue
        best, *rest = rows
        others = ", ".join(f"{m} {v:.0%}" for m, v, _ in rest)
        parts.append(
            f"With {fractions[i]:.0%} of the data, {best[0]} is best at {best[1]:.0%} (± {best[2]:.0%})"
            + (f", then {others}." if others else ".")
        )
    return " ".join(parts)
