"""Where do the models look? GradCAM and Integrated Gradients side by side, with the checks that make
them trustworthy.

For each chosen model (CNN, DeiT-like ViT, ConViT, MLP-Mixer, MLP) and the same image:

- GradCAM (Selvaraju et al., ICCV 2017) at the family's target layer (last conv stage; the input of a
  ViT's last attention; ConViT's last GPSA block; the Mixer's last block), with ReLU as in the paper, shown
  at its native resolution (the layer's grid; upsampling only interpolates).
- Integrated Gradients (Sundararajan et al., ICML 2017), summed over colour channels. Default baseline:
  **expected gradients** (Erion et al., Nature Machine Intelligence 2021, arXiv 1906.10670) over one
  training image per class, so that the reference holds no class in particular: with an accurate model
  p(c | x′) averages to about 1/classes. The baseline's own logit F(x′) and probability p(c | x′) are
  reported for every model and for every baseline kind, with a warning when the baseline already holds the
  explained class (a blurred shape is still a shape: the CNN called 99 % of blurred test images "circle").
  IG distributes only F(x) − F(x′), so a baseline that already holds the class leaves little to explain.
- Convergence, two ways: the completeness delta Σ IG − (F(x) − F(x′)) and the relative L2 change of the
  map between n and 2n steps (a small delta does not mean a converged map).
- Sanity checks (Adebayo et al., NeurIPS 2018) over a probe set and several seeds: see `sanity.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from backend import plots
from backend.labs.base import Lab, LabContext, LabParams, LabResult, LoadedModel, register_lab
from backend.labs.probe import has_probe_set, preprocess_batch, probe_images
from backend.labs.saliency import (
    CamTarget,
    cam_target,
    expected_gradients,
    gradcam,
    integrated_gradients,
    integrated_gradients_batch,
)
from backend.labs.sanity import SanityResult, nan_to_none, run_sanity
from backend.models.preprocess import data_config, display_image, preprocess

BaselineKind = Literal["expected", "blurred", "black", "zero"]
BASELINE_KINDS: tuple[str, ...] = ("expected", "blurred", "black", "zero")
HOLDS_CLASS = 0.5  # warn when the baseline gives the explained class at least this probability
UNCONVERGED = 0.1  # warn when the map changes by more than this (relative L2) from n to 2n steps


MAX_IG_WORK = 4096  # models × ig_steps × references (the default is 4 × 32 × 8 = 1,024)
MAX_SANITY_WORK = 8192  # models × (probe images + 1) × seeds × sanity IG steps (default 1,120)
CASCADE_UNITS = 8  # about how many layer groups a zoo model's cascade randomises, one IG each


NOTICES = (
    (
        "GradCAM at its layer",
        "The random-weights map is drawn on the trained map's scale, so a faint twin means GradCAM depends "
        "on what the model learned.",
    ),
    (
        "Integrated Gradients",
        "If the n and 2n step maps differ visibly, IG has not converged: raise the steps before trusting it.",
    ),
    ("Sanity check", "Values near 0 mean the map changes when the weights are randomised, as it should."),
    (
        "Cascading",
        "Curves falling towards 0 as layers are re-initialised from the output down pass the check.",
    ),
    (
        "p(c",
        "A baseline that already holds the class leaves IG little to explain: compare its bar with the "
        "image's.",
    ),
)


class AttributionParams(LabParams):
    target_class: int = Field(
        default=-1, ge=-1, le=100000, description="Class to explain (-1 = each model's own prediction)"
    )
    ig_steps: int = Field(
        default=32,
        ge=4,
        le=512,
        description="Integration steps n of Integrated Gradients (the map is also computed at 2n to "
        "show how much it still changes)",
    )
    ig_baseline: BaselineKind = Field(
        default="expected",
        description="Integrated Gradients baseline x′: 'expected' = expected gradients, IG averaged over "
        "training images, one per class (class-neutral; Erion et al. 2021); 'blurred' = a strongly "
        "blurred copy of the image (often still holds the class); 'black' = black pixels; 'zero' = an "
        "all-zero model input",
    )
    references: int = Field(
        default=8,
        ge=1,
        le=32,
        description="Training images averaged over by expected gradients (drawn evenly across classes)",
    )
    randomisation: Literal["both", "all-layers", "cascade", "none"] = Field(
        default="both",
        description="Sanity check: compare each map with the map of a randomly re-initialised model, all "
        "layers at once and/or as Adebayo's cascade (from the output layer down)",
    )
    statistic: Literal["kendall", "spearman"] = Field(
        default="kendall",
        description="Rank statistic between trained and randomised maps: Kendall τ-b (tie-aware; "
        "post-ReLU maps have many tied zeros) or Spearman ρ",
    )
    probe_size: int = Field(
        default=6,
        ge=0,
        le=64,
        description="Test images in the sanity check besides this one (0 = this image only)",
    )
    seeds: int = Field(default=5, ge=1, le=20, description="Random re-initialisations in the sanity check")
    sanity_ig_steps: int = Field(
        default=8, ge=4, le=128, description="Integration steps of IG inside the sanity check"
    )
    ig_in_cascade: bool = Field(
        default=False,
        description="Also run IG at every step of the cascade (slow: one IG per unit, seed and image); "
        "GradCAM always runs there",
    )
    seed: int = Field(default=0, ge=0, description="First seed (re-initialisations and reference images)")


def class_probability(model: nn.Module, x: torch.Tensor, cls: int) -> tuple[float, float, int]:
    """Mean over a batch of baselines: logit F_c, probability p(c | x′), and the argmax of the mean probs."""
    with torch.no_grad():
        logits = model(x).float()
        probs = torch.softmax(logits, -1)
    return float(logits[:, cls].mean()), float(probs[:, cls].mean()), int(probs.mean(0).argmax())


def blurred(x: torch.Tensor) -> torch.Tensor:
    """Sturmfels et al., Distill 2020: Gaussian blur with σ = size/8."""
    sigma = max(x.shape[-2:]) / 8
    k = min(2 * math.ceil(3 * sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
    return gaussian_blur(x, [k, k], [sigma, sigma]).contiguous()


def black(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    cfg = data_config(model)  # black pixels through the model's own normalisation
    mean = torch.tensor(cfg["mean"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((torch.zeros_like(x) - mean) / std).contiguous()


def reference_images(m: LoadedModel, n: int, seed: int) -> torch.Tensor | None:
    """n training images of the model's dataset, spread evenly over the classes; None if unavailable
    (ImageNet models: no ImageNet training images ship here, so no expected-gradients references)."""
    if not has_probe_set(m.entry, "train"):
        return None
    images, _ = probe_images(m.entry, n, seed, split="train")
    return preprocess_batch(images, m.module)


def baselines_for(
    kind: str, model: nn.Module, x: torch.Tensor, refs: torch.Tensor | None
) -> torch.Tensor | None:
    """Baseline(s) for x (B=1): (1, C, H, W), or (K, C, H, W) references for expected gradients."""
    if kind == "expected":
        return refs
    if kind == "blurred":
        return blurred(x)
    if kind == "black":
        return black(model, x)
    return torch.zeros_like(x)


def relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / ‖b‖ (b the finer estimate); NaN if b is all zero."""
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else math.nan


@register_lab
class AttributionLab(Lab):
    name = "attribution"
    title = "GradCAM and Integrated Gradients"
    description = (
        "GradCAM and Integrated Gradients for CNN, ViT, ConViT and MLP-Mixer on the same image, with the "
        "baseline's own prediction, a convergence check, and sanity checks against randomly "
        "re-initialised models over test images and seeds."
    )
    Params = AttributionParams
    model_families = ("cnn", "robust-cnn", "vit", "convit", "mixer", "mlp")
    max_models = 5
    default_models = ("cnn-shapes", "deit-shapes", "convit-shapes", "mixer-shapes")

    def request_problems(self, params: Any, models: list[str]) -> list[str]:
        # Forward-backward passes, roughly: IG at n and 2n steps per reference, and the sanity check's
        # GradCAM + IG per image, seed and (in the cascade) unit. 512 IG steps on 5 models took 3 minutes
        # and 3 GB on one CPU thread, so both products are capped.
        problems = []
        ig = len(models) * params.ig_steps * params.references
        if ig > MAX_IG_WORK:
            problems.append(
                f"too much work: models × IG steps × references is {ig:,}, at most {MAX_IG_WORK:,}"
            )
        if params.randomisation != "none":
            cascade = CASCADE_UNITS if params.ig_in_cascade else 1
            sanity = len(models) * (params.probe_size + 1) * params.seeds * params.sanity_ig_steps * cascade
            if sanity > MAX_SANITY_WORK:
                units = " × cascade units" if cascade > 1 else ""
                problems.append(
                    f"too much work: models × (images + 1) × seeds × sanity IG steps{units} is "
                    f"{sanity:,}, at most {MAX_SANITY_WORK:,}"
                )
        return problems

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        if ctx.image is None:
            raise ValueError("the attribution lab needs an image")
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        warnings: list[str] = []
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
            target = cam_target(m.entry, model)
            refs = reference_images(m, params.references, params.seed)
            refs = refs.to(ctx.device) if refs is not None else None
            kind = params.ig_baseline
            if kind == "expected" and refs is None:
                kind = "blurred"
                warnings.append(
                    f"{m.name}: no training images of its dataset here, so IG used the blurred baseline"
                )
            r: dict[str, Any] = {
                "image": display_image(ctx.image, model),
                "class": m.entry.class_names[cls],
                "prob": float(probs[cls]),
                "cam_layer": target.path or None,
                "baseline": kind,
                "num_classes": num_classes,
            }
            # The baseline's own prediction, for every baseline kind (forward passes only: cheap).
            base_pred: dict[str, dict[str, Any]] = {}
            for k in BASELINE_KINDS:
                b = baselines_for(k, model, x, refs)
                if b is None:
                    continue
                f_b, p_b, top = class_probability(model, b, cls)
                base_pred[k] = {
                    "logit": f_b,
                    "p_class": p_b,
                    "predicted": m.entry.class_names[top],
                    # argmax alone is not enough for the mean over references (it is near chance)
                    "holds_class": bool(p_b >= HOLDS_CLASS or (top == cls and p_b > 2 / num_classes)),
                }
            r["baselines"] = base_pred
            with torch.no_grad():
                f_x = float(model(x).float()[0, cls])
            ctx.progress(base + 0.05 * span, f"{m.name}: GradCAM")
            if target.path:
                r["cam"] = gradcam(model, target, x, cls, upsample=False)[0, 0].cpu().numpy()
            ctx.progress(base + 0.15 * span, f"{m.name}: Integrated Gradients ({params.ig_steps} and 2×)")
            ig, delta = self._ig(model, x, baselines_for(kind, model, x, refs), cls, kind, params.ig_steps)
            ig2, delta2 = self._ig(
                model, x, baselines_for(kind, model, x, refs), cls, kind, 2 * params.ig_steps
            )
            r["ig"] = ig[0].sum(0).cpu().numpy()
            r["ig_2n"] = ig2[0].sum(0).cpu().numpy()
            chosen = base_pred[kind]
            gap = f_x - chosen["logit"]
            r["ig_delta"], r["gap"] = delta, gap
            r["ig_change_n_2n"] = relative_l2(r["ig"], r["ig_2n"])
            mm: dict[str, Any] = {
                "explained_class": r["class"],
                "probability": round(r["prob"], 4),
                "gradcam_layer": r["cam_layer"],
                "ig_baseline": kind,
                "baseline_logit": chosen["logit"],
                "baseline_p_class": chosen["p_class"],
                "baseline_predicted": chosen["predicted"],
                "baseline_holds_class": chosen["holds_class"],
                "p_class_by_baseline": {k: round(v["p_class"], 4) for k, v in base_pred.items()},
                "logit_x_minus_logit_baseline": gap,
                "ig_convergence_delta": delta,
                "ig_relative_delta": delta / max(abs(gap), 1e-12),
                "ig_convergence_delta_2n": delta2,
                "ig_map_change_n_to_2n": nan_to_none(r["ig_change_n_2n"]),
            }
            if r["ig_change_n_2n"] > UNCONVERGED:
                warnings.append(
                    f"{m.name}: the IG map still changes {r['ig_change_n_2n']:.0%} between "
                    f"{params.ig_steps} and {2 * params.ig_steps} steps; raise ig_steps"
                )
            if chosen["holds_class"]:
                warnings.append(
                    f"{m.name}: the {kind} baseline already gives '{r['class']}' p = {chosen['p_class']:.2f} "
                    f"(predicted: {chosen['predicted']}), so IG only distributes a logit gap of {gap:.2f}"
                )
            if params.randomisation != "none":
                sanity = self._sanity(
                    ctx, m, params, x, cls, kind, refs, target, base + 0.3 * span, 0.7 * span
                )
                r["sanity"] = sanity
                mm["sanity"] = sanity.metrics()
            per_model[m.name] = r
            metrics[m.name] = mm
        return LabResult(
            arrays={"per_model": per_model}, metrics=metrics, text=self._text(per_model, warnings)
        )

    @staticmethod
    def _ig(
        model: nn.Module, x: torch.Tensor, baseline: torch.Tensor | None, cls: int, kind: str, steps: int
    ) -> tuple[torch.Tensor, float]:
        assert baseline is not None
        if kind == "expected":
            return expected_gradients(model, x, baseline, cls, steps)
        return integrated_gradients(model, x, baseline, cls, steps)

    @staticmethod
    def _sanity(
        ctx: LabContext,
        m: LoadedModel,
        params: Any,
        x: torch.Tensor,
        cls: int,
        kind: str,
        refs: torch.Tensor | None,
        target: CamTarget,
        base: float,
        span: float,
    ) -> SanityResult:
        model = m.module
        xs = x
        if params.probe_size > 0 and has_probe_set(m.entry):
            images, _ = probe_images(m.entry, params.probe_size, params.seed)
            xs = torch.cat([x, preprocess_batch(images, model).to(ctx.device)])
        with torch.no_grad():
            classes = model(xs).argmax(-1)
        classes[0] = cls  # this image: the class the lab explains; probe images: the trained model's own
        if kind == "expected":  # one reference per image: the Monte-Carlo form of expected gradients
            assert refs is not None
            idx = torch.arange(len(xs), device=refs.device) % len(refs)
            bases = refs[idx]
        elif kind == "blurred":
            bases = blurred(xs)
        elif kind == "black":
            bases = black(model, xs)
        else:
            bases = torch.zeros_like(xs)

        def maps(mod: nn.Module, cascade: bool = False) -> dict[str, np.ndarray]:
            out: dict[str, np.ndarray] = {}
            if target.path:
                out["GradCAM"] = gradcam(mod, target, xs, classes, upsample=False)[:, 0].cpu().numpy()
            if not cascade or params.ig_in_cascade:
                ig, _ = integrated_gradients_batch(mod, xs, bases, classes, params.sanity_ig_steps)
                out["|IG|"] = ig.sum(1).abs().cpu().numpy()
            return out

        kinds = ("all-layers", "cascade") if params.randomisation == "both" else (params.randomisation,)
        return run_sanity(
            m.entry,
            model,
            maps,
            xs,
            seeds=[params.seed + i for i in range(params.seeds)],
            statistic=params.statistic,
            randomisations=kinds,
            progress=lambda f, msg: ctx.progress(base + span * f, f"{m.name}: sanity check, {msg}"),
        )

    @staticmethod
    def _text(per_model: dict[str, dict[str, Any]], warnings: list[str]) -> str:
        parts = []
        for name, r in per_model.items():
            s = (
                f"{name}: explaining '{r['class']}' ({r['prob']:.0%}); IG delta {r['ig_delta']:.1e} of a "
                f"logit gap {r['gap']:.2f}, map changes {r['ig_change_n_2n']:.0%} from n to 2n steps"
            )
            sanity: SanityResult | None = r.get("sanity")
            if sanity is not None and sanity.full:
                stats = []
                for method, vals in sanity.full.items():
                    ok = vals[np.isfinite(vals)]
                    if ok.size:
                        stats.append(f"{method} {ok.mean():+.2f} ± {ok.std():.2f}")
                sym = "τ" if sanity.statistic == "kendall" else "ρ"
                s += f"; trained vs random {sym}: " + ", ".join(stats)
            parts.append(s)
        text = "; ".join(parts) + "."
        if warnings:
            text += " Warning: " + "; ".join(warnings) + "."
        return text

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        per_model = result.arrays["per_model"]
        figs: list[dict[str, Any]] = []
        cam_rows = []
        ig_rows = []
        for name, r in per_model.items():
            sanity: SanityResult | None = r.get("sanity")
            rand = sanity.example_random if sanity is not None else {}
            if "cam" in r:
                panels = [(f"→ {r['class']}", r["cam"])]
                if "GradCAM" in rand:
                    panels.append((f"random weights (seed {params.seed})", rand["GradCAM"]))
                cam_rows.append((name, r["image"], panels))
            panels = [(f"{params.ig_steps} steps", r["ig"]), (f"{2 * params.ig_steps} steps", r["ig_2n"])]
            ig_rows.append((name, r["image"], panels))
        if cam_rows:
            figs.append(
                plots.overlay_rows(
                    cam_rows,
                    "GradCAM at its layer's own grid; each row shares one colour scale "
                    "(the random-weights map is drawn on the trained map's scale)",
                    colorbar_title="GradCAM",
                )
            )
        figs.append(
            plots.overlay_rows(
                ig_rows,
                "Integrated Gradients summed over colour, at n and 2n steps (one signed scale per row); "
                "baseline: " + ", ".join(sorted({r["baseline"] for r in per_model.values()})),
                signed=True,
                colorbar_title="IG",
            )
        )
        figs.append(self._baseline_figure(per_model))
        sym = "Kendall τ-b" if params.statistic == "kendall" else "Spearman ρ"
        spread: dict[str, dict[str, list[float | None]]] = {}
        curves: dict[str, Any] = {}
        for name, r in per_model.items():
            sanity = r.get("sanity")
            if sanity is None:
                continue
            for method, vals in sanity.full.items():
                spread.setdefault(method, {})[name] = nan_to_none(vals.ravel())
            if sanity.cascade:
                series = {
                    method: (
                        [_mean(v) for v in vals],
                        [_std(v) for v in vals],
                    )
                    for method, vals in sanity.cascade.items()
                }
                curves[name] = (sanity.cascade_labels, series)
        if spread:
            n_img = next(iter(per_model.values()))["sanity"].full
            shape = next(iter(n_img.values())).shape
            figs.append(
                plots.spread_chart(
                    spread,
                    f"Sanity check, all layers randomised: {sym} between each trained map and its random-"
                    f"weights twin ({shape[1]} images × {shape[0]} seeds; near 0 = the map depends on "
                    "the learned weights)",
                    yaxis_title=sym,
                    yrange=(-1.05, 1.05),
                    reference=(0.0, "no similarity"),
                )
            )
        if curves:
            figs.append(
                plots.cascade_curves(
                    curves,
                    f"Cascading randomisation (Adebayo et al.): {sym} to the trained map as units are "
                    "re-initialised from the output down (mean ± std over images and seeds)",
                    yaxis_title=sym,
                )
            )
        return plots.add_notices(figs, NOTICES)

    @staticmethod
    def _baseline_figure(per_model: dict[str, dict[str, Any]]) -> dict[str, Any]:
        names = list(per_model)
        series: dict[str, Sequence[float]] = {"p(c | x), the image": [per_model[n]["prob"] for n in names]}
        labels = {
            "expected": "expected-gradients refs (mean)",
            "blurred": "blurred",
            "black": "black",
            "zero": "zero",
        }
        for k in BASELINE_KINDS:
            if all(k in per_model[n]["baselines"] for n in names):
                series[f"p(c | x′), {labels[k]}"] = [per_model[n]["baselines"][k]["p_class"] for n in names]
        cats = [f"{n}<br>c = {per_model[n]['class']}" for n in names]
        return plots.grouped_bars(
            cats,
            series,
            "How much of the explained class c does each baseline already hold? IG explains only "
            "F(x) − F(x′), so a baseline with high p(c | x′) leaves little to attribute",
            yaxis_title="probability of c",
            yrange=(0.0, 1.05),
        )


def _mean(v: np.ndarray) -> float | None:
    ok = v[np.isfinite(v)]
    return float(ok.mean()) if ok.size else None


def _std(v: np.ndarray) -> float | None:
    ok = v[np.isfinite(v)]
    return float(ok.std(ddof=1)) if ok.size > 1 else None
