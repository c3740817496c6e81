"""A plugin the platform tests load with BIASLAB_PLUGINS=["toy_plugin"]: what a new model, a new lab
and a new kind of input each take, in one file.

- `toy-mean-denoiser`: a model computed from a dataset (source "computed"): the mean digit, the
  optimal denoiser at infinite noise. Its build reports three progress steps.
- `toy-echo`: a lab that takes a text input and no image, reports the device it ran on, and
  publishes three partial results, one word of the text at a time.
"""

from __future__ import annotations

import time

import plotly.graph_objects as go
import torch
from pydantic import Field
from torch import nn

from backend.data import load_dataset
from backend.labs import Lab, LabContext, LabParams, LabResult, register_lab
from backend.models import ModelEntry, register_model
from backend.models.registry import ProgressFn
from backend.plots import to_json
from backend.schemas import TextInputSpec

TOY_MODEL = "toy-mean-denoiser"
TOY_LAB = "toy-echo"
MEAN_OF = 64  # digits averaged by the toy denoiser


class MeanDenoiser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(3, 32, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32) -> (B, 3, 32, 32)
        return self.mean.expand_as(x)


def fit_mean(model: nn.Module, progress: ProgressFn) -> None:
    progress(0.0, "loading digits")
    x, _ = load_dataset("digits", "train", n=MEAN_OF, seed=0).tensors()
    progress(0.5, "averaging")
    model.mean.copy_(x.mean(0))  # type: ignore[operator]
    progress(1.0, "done")


register_model(
    ModelEntry(
        name=TOY_MODEL,
        family="mean",
        task="denoise",
        dataset="digits",
        builder=MeanDenoiser,
        input_size=(3, 32, 32),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        source="computed",
        compute=fit_mean,
        description="The mean of 64 digits: the optimal denoiser at infinite noise (test plugin).",
    )
)


class EchoParams(LabParams):
    delay_s: float = Field(default=1.0, ge=0.0, le=5.0, description="Pause between partial results")


class EchoLab(Lab):
    name = TOY_LAB
    title = "Echo (test)"
    description = "Echoes the question word by word as partial results; reports its device."
    Params = EchoParams
    model_tasks = ("denoise",)
    needs_image = False
    text_input = TextInputSpec(label="Question", suggestions=["is there a red cube?"], max_chars=80)
    max_models = 1
    default_models = (TOY_MODEL,)

    def run(self, ctx: LabContext, params: EchoParams) -> LabResult:  # type: ignore[override]
        words = (ctx.text or "").split()[:3]
        for i, _ in enumerate(words):
            ctx.progress((i + 1) / (len(words) + 1), f"word {i + 1}")
            ctx.publish(LabResult({"words": words[: i + 1]}, {"words": i + 1}, " ".join(words[: i + 1])))
            time.sleep(params.delay_s)
        mean = ctx.models[0].module.mean  # type: ignore[union-attr]
        metrics = {"device": str(ctx.device), "words": len(words), "model_mean": float(mean.mean())}
        return LabResult({"words": words}, metrics, " ".join(words))

    def figures(self, result: LabResult, params: EchoParams) -> list[dict]:  # type: ignore[override]
        # One chart per word, so the number of figures changes from one result to the next.
        words = result.arrays["words"]
        out = []
        for i, word in enumerate(words):
            fig = go.Figure(go.Bar(x=list(word), y=[1] * len(word)))
            fig.update_layout(title=f"word {i + 1}: {word}")
            out.append(to_json(fig))
        return out


register_lab(EchoLab)
