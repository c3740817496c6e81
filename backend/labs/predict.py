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
from backend.labs.base import Lab, LabContext, LabParams, LabResult, LoadedModel, register_lab
from backend.models.preprocess import display_image, preprocess

MAX_AUGMENTED_IMAGES = 20_000  # tta_samples × models: keeps one job near a minute and a half on a CPU


class PredictParams(LabParams):
    top_k: int = Field(
        default=5,
        ge=1,
        le=20,
        title="Classes to show per model",
        description="The most likely classes of each model",
    )
    tta_samples: int = Field(
        default=0,
        ge=0,
        le=20000,
        title="Shifted copies to average (0 = off)",
        description="Test-time augmentation: also average the prediction over this many randomly shifted "
        "and flipped copies",
    )
    max_shift: int = Field(
        default=4, ge=0, le=16, title="Largest shift (pixels)", description="For the shifted copies"
    )
    seed: int = Field(default=0, ge=0, title="Random seed", description="Which shifted copies are drawn")


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
    description = "What each model answers for the same image, and how sure it is."
    Params = PredictParams
    default_models = ("cnn-shapes", "convit-shapes", "deit-shapes")
    locks_models = False  # plain forward passes only: concurrent predict jobs share batched passes

    def request_problems(self, params: Any, models: list[str]) -> list[str]:
        # About 20 s per 1,000 augmentations on four models on one CPU thread (measured).
        work = params.tta_samples * len(models)
        if work > MAX_AUGMENTED_IMAGES:
            return [f"too much work: augmentations × models is {work:,}, at most {MAX_AUGMENTED_IMAGES:,}"]
        return []

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        assert ctx.image is not None
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        inputs: dict[str, np.ndarray] = {}  # model input size -> the exact picture the model gets
        n_models = len(ctx.models)
        for i, m in enumerate(ctx.models):
            ctx.progress(i / n_models, f"running {m.name}")
            x = preprocess(ctx.image, m.module).to(ctx.device)
            size = "×".join(str(v) for v in x.shape[-2:])
            if size not in inputs:
                inputs[size] = display_image(ctx.image, m.module, x)
            with torch.no_grad():
                probs = torch.softmax(ctx.forward(m, x).float(), dim=-1)[0].cpu().numpy()
                tta = self._tta(ctx, m, x, params, i, n_models) if params.tta_samples else None
            k = min(params.top_k, probs.shape[0])
            top = np.argsort(-probs)[:k]
            names = list(m.entry.class_names)
            per_model[m.name] = {"class_names": names, "probs": probs, "top": [names[j] for j in top]}
            metrics[m.name] = {"top1": names[top[0]], "confidence": float(probs[top[0]])}
            if tta is not None:
                per_model[m.name]["tta_probs"] = tta
                metrics[m.name]["tta_mean_prob_of_top1"] = float(tta[top[0]])
        original = np.asarray(ctx.image.convert("RGB"), dtype=np.float32) / 255.0
        text = " ".join(f"{n} says {v['top1']} ({v['confidence']:.0%})." for n, v in metrics.items())
        return LabResult(
            arrays={"per_model": per_model, "original": original, "inputs": inputs},
            metrics=metrics,
            text=text,
        )

    @staticmethod
    def _tta(
        ctx: LabContext, model: LoadedModel, x: torch.Tensor, params: Any, i: int, n_models: int
    ) -> np.ndarray:
        gen = torch.Generator().manual_seed(params.seed)
        total, batch = params.tta_samples, 64
        acc = torch.zeros(())
        for start in range(0, total, batch):
            n = min(batch, total - start)
            xb = augment(x.cpu(), n, params.max_shift, gen).to(ctx.device)
            p = torch.softmax(ctx.forward(model, xb).float(), dim=-1).sum(0).cpu()
            acc = acc + p
            ctx.progress((i + (start + n) / total) / n_models, f"{start + n}/{total} augmentations")
        return (acc / total).numpy()

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        per_model = result.arrays["per_model"]
        original = result.arrays["original"]
        h, w = original.shape[:2]
        panels = [(f"your image<br>({w}×{h} px)", original)]
        panels += [(f"model input<br>({size} px)", img) for size, img in result.arrays["inputs"].items()]
        figs = [
            plots.image_pair(
                panels,
                "What the models see",
                notice="The models never see your image itself, only this small resized copy: every square "
                "on the right is one input pixel. Detail that is lost here cannot influence any answer.",
            )
        ]
        classes = class_order(per_model)
        k = min(params.top_k, len(classes))
        figs.append(
            plots.probability_bars(
                classes,
                {n: [prob_of(r, c) for c in classes] for n, r in per_model.items()},
                f"How sure is each model?<br><sup>each model's top {k} · one shared 0–100 % axis</sup>",
                notice="Compare bar lengths across models: every model is drawn on the same 0–100 % axis and "
                "in the same class order. A long bar for a class the image does not show is over-confidence, "
                "not knowledge.",
            )
        )
        if any("tta_probs" in r for r in per_model.values()):
            figs.append(
                plots.probability_bars(
                    classes,
                    {n: [prob_of(r, c, "tta_probs") for c in classes] for n, r in per_model.items()},
                    f"Averaged over {params.tta_samples} shifted and flipped copies",
                    notice="If a model's bars here differ from the chart above, its answer depends on "
                    "exactly where the shape sits: it has not learned to ignore small shifts.",
                )
            )
        return figs


def class_order(per_model: dict[str, dict[str, Any]]) -> list[str]:
    """Every class in some model's top-k, in the training set's class order (the first model's list,
    then any class only later models know), so every model's bars line up."""
    wanted = {c for r in per_model.values() for c in r["top"]}
    order: list[str] = []
    for r in per_model.values():
        order += [c for c in r["class_names"] if c in wanted and c not in order]
    return order


def prob_of(r: dict[str, Any], cls: str, key: str = "probs") -> float:
    """A model's probability of a class by name; 0 when the model does not know that class."""
    names = r["class_names"]
    return float(r[key][names.index(cls)]) if cls in names else 0.0
