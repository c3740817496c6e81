"""Shape versus texture bias, and what adversarial training does to it (METHODS §5, issue 11).

- Shape bias (Geirhos et al., ICLR 2019, arXiv 1811.12231; bethgelab/model-vs-human `ShapeBias`):
  n_s / (n_s + n_t) over cue-conflict images only (shape class ≠ texture class); decisions for neither
  class are ignored (`backend.data.cue_conflict.shape_bias`).
- Cue-availability controls: accuracy on shape-only (flat silhouettes) and texture-only (full-frame
  texture) images. A bias figure means little unless both are well above chance (1/8).
- Robust models (Madry et al., ICLR 2018, arXiv 1706.06083): the zoo's PGD-trained CNN ladders. Clean
  and L∞ PGD robust accuracy on each model's own test split; the robustness ladder (robust accuracy
  against attack ε) is computed live on a small batch.
- The user's image (or a chosen cue-conflict image) with its texture-only (patch-shuffled) and shape-only
  (silhouette) versions, each model's prediction and GradCAM on each.
- The adversarial view: an L∞ PGD perturbation of the image against every CNN of the ladders, drawn
  amplified. Robust models' gradients tend to be perceptually aligned (Tsipras et al., ICLR 2019,
  arXiv 1805.12152), so their perturbations can look like a shape; the standard CNN's like noise.

Two training sets: `shapes` (shape the easy cue) and `cue-texture-easy` (texture the easy cue;
backend/data/texture_easy.py). The lab groups ladders by training set.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from backend import plots
from backend.data import load_dataset
from backend.data.cue_conflict import CUE_CONFIG, load_cue_conflict, shape_bias
from backend.data.shapes import SHAPE_CLASSES, render
from backend.data.splits import Split, split_rng, to_tensor
from backend.data.textures import TEXTURES
from backend.labs.base import Lab, LabContext, LabParams, LabResult, LoadedModel, register_lab
from backend.labs.saliency import cam_target, gradcam
from backend.labs.shape_cues import attack, pair_matrix, patch_shuffle, silhouette
from backend.models import get_entry
from backend.models.preprocess import preprocess
from backend.models.registry import ModelEntry

K = len(SHAPE_CLASSES)
MAX_ATTACK_WORK = 120_000  # models × attacked images × PGD steps × ladder ε values (default ~4.6k)
ShapeName = Literal["circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow"]
TextureName = Literal["stripes", "checker", "dots", "noise", "brick", "grass", "gravel", "zigzag"]
TRAINING_SETS = {"shapes": "shapes (shape easy)", "cue-texture-easy": "texture-easy"}
VERSIONS = ("image", "texture-only (patch-shuffled)", "shape-only (silhouette)")

NOTICES = (
    ("Shape bias per model", "Bars near 1 decide by shape, near 0 by texture; 0.5 is no preference."),
    (
        "Accuracy per model",
        "Shape-only and texture-only bars say which cue each model can use at all (chance is 12.5%). "
        "The gap between clean and robust accuracy is what adversarial training closes.",
    ),
    (
        "Robust-CNN ladder",
        "Follow each training set's line from ε = 0: does adversarial training move shape bias up, and "
        "what does it cost in clean accuracy?",
    ),
    ("pair", "A dark row is a shape the model ignores; a dark column a texture that wins over any shape."),
    (
        "GradCAM",
        "Compare each model's prediction on the texture-only and shape-only versions with the image's: "
        "the version that keeps the prediction holds the cue the model uses.",
    ),
    (
        "PGD perturbation",
        "Grey is no change. Noise-like perturbations are typical of the standard CNN; robust models' "
        "can show edges or a shape.",
    ),
    ("Robustness ladder", "Robust models lose less accuracy as ε grows but start lower at ε = 0."),
)


class ShapeBiasParams(LabParams):
    per_pair: int = Field(
        default=3, ge=1, le=20, description="Cue-conflict images per (shape, texture) pair (56 pairs)"
    )
    control_images: int = Field(
        default=48, ge=8, le=800, description="Shape-only and texture-only images each (balanced)"
    )
    attack_images: int = Field(
        default=32, ge=8, le=500, description="Test images for clean/robust accuracy and the ladder"
    )
    attack_steps: int = Field(
        default=3, ge=1, le=50, description="PGD steps for robust accuracy and the ladder (α = 2.5ε/steps)"
    )
    ladder_eps: list[Annotated[float, Field(ge=0.0, le=32.0)]] = Field(
        default=[0.0, 2.0, 4.0, 8.0],
        min_length=1,
        max_length=8,
        description="Attack radii of the robustness ladder, in 1/255 pixel units",
    )

    @field_validator("ladder_eps", mode="before")
    @classmethod
    def _list_from_text(cls, v: Any) -> Any:
        """The browser's text box sends "[0.0, 2.0]" or "0, 2": split it; lists pass through."""
        if isinstance(v, str):
            parts = [p for p in v.strip().strip("[]").replace(" ", "").split(",") if p]
            try:
                return [float(p) for p in parts]
            except ValueError:
                raise ValueError("give ε values as numbers separated by commas, e.g. 0, 2, 4, 8") from None
        return v

    eps: float = Field(
        default=8.0, ge=0.0, le=32.0, description="L∞ ε (in /255) for robust accuracy and the image attack"
    )
    image_steps: int = Field(default=20, ge=1, le=200, description="PGD steps of the attack on the image")
    shuffle_grid: int = Field(
        default=4, ge=2, le=8, description="Patch grid of the texture-only (patch-shuffled) version"
    )
    example_shape: ShapeName = Field(default="star", description="Without an image: the example's shape")
    example_texture: TextureName = Field(
        default="stripes", description="Without an image: the example's texture"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Which images are drawn, PGD's start")


def train_eps(entry: ModelEntry) -> float:
    """The model's adversarial-training ε in /255 (0 for standard training)."""
    return round(float(entry.recipe.get("adv_eps", 0.0)) * 255, 3) if entry.recipe else 0.0


def ladders(entries: list[ModelEntry]) -> dict[str, list[tuple[float, str]]]:
    """Training set -> [(training ε, model name)] for the CNNs (standard and PGD-trained), sorted by ε."""
    out: dict[str, list[tuple[float, str]]] = {}
    for e in entries:
        ladder_regime = e.regime == "standard" or e.regime.startswith("pgd")
        if e.family == "cnn" and ladder_regime and e.recipe and e.recipe.get("dataset") in TRAINING_SETS:
            out.setdefault(e.dataset, []).append((train_eps(e), e.name))
    return {k: sorted(v) for k, v in out.items() if len(v) > 1}


@lru_cache(maxsize=16)
def cue_images(kind: str, per_pair: int, seed: int) -> Split:
    """Cue-conflict images (deterministic by their arguments): cached, as every run redraws the same."""
    return load_cue_conflict(kind, per_pair=per_pair, seed=seed)


@lru_cache(maxsize=8)
def test_images(dataset: str, n: int, seed: int) -> Split:
    return load_dataset(dataset, "test", n=n, seed=seed)


def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """Softmax probabilities (N, K) without gradients."""
    with torch.no_grad():
        return torch.cat(
            [torch.softmax(model(x[i : i + batch]).float(), -1) for i in range(0, len(x), batch)]
        )


@register_lab
class ShapeBiasLab(Lab):
    name = "shape-bias"
    title = "Shape vs texture bias"
    description = (
        "Does a model decide by shape or by texture? Shape bias on cue-conflict images for every model, "
        "with shape-only and texture-only controls, clean and PGD robust accuracy, the robust-CNN ladders "
        "on two training sets, and adversarial perturbations of your image."
    )
    Params = ShapeBiasParams
    model_families = ("cnn", "vit", "convit", "mixer", "mlp")
    needs_image = False  # without one the lab uses a chosen cue-conflict image
    max_models = 12
    # Standard and ε = 8/255 CNN on each training set: a cheap default (every lab runs its defaults in
    # the test suite three times); tick the rest of the ladders and the other families for the full chart.
    default_models = ("cnn-shapes", "cnn-shapes-pgd8", "cnn-texture-easy", "cnn-texture-easy-pgd8")

    def request_problems(self, params: Any, models: list[str]) -> list[str]:
        problems = []
        for name in models:
            entry = get_entry(name)
            if tuple(entry.class_names) != SHAPE_CLASSES:
                problems.append(
                    f"{name!r} does not classify the eight shape classes; the cue-conflict set needs them"
                )
        grid = len(set(params.ladder_eps) | {params.eps})
        work = len(models) * params.attack_images * params.attack_steps * grid
        if work > MAX_ATTACK_WORK:
            problems.append(
                f"too much work: models × attack images × attack steps × ε values is {work:,}, "
                f"at most {MAX_ATTACK_WORK:,}"
            )
        return problems

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        for m in ctx.models:
            if tuple(m.entry.class_names) != SHAPE_CLASSES:
                raise ValueError(f"{m.name!r} does not classify the eight shape classes")
        conflict = cue_images("conflict", params.per_pair, params.seed)
        per_class = max(1, params.control_images // K)
        controls = {
            k: load_cue_conflict(k, per_pair=per_class, seed=params.seed)
            for k in ("shape-only", "texture-only")
        }
        versions, example = self._versions(ctx, params)
        eps_grid = sorted(set(params.ladder_eps) | {params.eps})
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        n = len(ctx.models)
        for i, m in enumerate(ctx.models):
            ctx.progress(i / n, f"{m.name}: cue-conflict and control images")
            r = self._cues(ctx, m, conflict, controls)
            test = test_images(m.entry.dataset, params.attack_images, params.seed)
            r["ladder"] = self._ladder(ctx, m, test, eps_grid, params, i / n, 1 / n)
            r["clean_accuracy"] = r["ladder"].get(0.0)
            r["robust_accuracy"] = r["ladder"][params.eps]
            r["versions"] = self._on_versions(ctx, m, versions)
            if m.entry.family == "cnn":
                r["adversarial"] = self._adversarial(ctx, m, versions[0], params)
            per_model[m.name] = r
            metrics[m.name] = self._metrics(m, r, params)
        ctx.progress(1.0, "done")
        groups = ladders([m.entry for m in ctx.models])
        arrays = {
            "per_model": per_model,
            "versions": versions.permute(0, 2, 3, 1).cpu().numpy(),
            "ladders": groups,
            "eps_grid": eps_grid,
        }
        metrics["example"] = example
        metrics["ladders"] = {
            data: [{"train_eps": e, "model": name, **self._rung(metrics[name])} for e, name in rungs]
            for data, rungs in groups.items()
        }
        return LabResult(arrays=arrays, metrics=metrics, text=self._text(metrics, groups, params))

    # --- compute ------------------------------------------------------------------------------------

    @staticmethod
    def _versions(ctx: LabContext, params: Any) -> tuple[torch.Tensor, str]:
        """(3, 3, 32, 32) in [0, 1]: the image, its patch-shuffled and its silhouette versions."""
        if ctx.image is not None:
            x = preprocess(ctx.image, ctx.models[0].module)[0]
            example = "your image"
        else:
            s, t = SHAPE_CLASSES.index(params.example_shape), TEXTURES.index(params.example_texture)
            img = render(np.array([s]), np.array([t]), split_rng(params.seed, "test"), CUE_CONFIG)
            x = to_tensor(img)[0]
            example = f"{params.example_shape} shape with {params.example_texture} texture"
        image = x.permute(1, 2, 0).numpy()
        rng = np.random.default_rng(params.seed)
        shuffled = patch_shuffle(image, params.shuffle_grid, rng)
        sil = silhouette(image)
        out = torch.from_numpy(np.stack([image, shuffled, sil])).permute(0, 3, 1, 2).float()
        return out.contiguous(), example

    @staticmethod
    def _cues(ctx: LabContext, m: LoadedModel, conflict: Split, controls: dict[str, Split]) -> dict[str, Any]:
        model = m.module
        x, _ = conflict.tensors()
        pred = predict(model, x.to(ctx.device)).argmax(1).cpu().numpy()
        s, t = conflict.meta["shape"], conflict.meta["texture"]
        n_s, n_t, frac = pair_matrix(pred, s, t, K)
        r: dict[str, Any] = {"bias": shape_bias(pred, s, t), "pairs": frac, "n_s": n_s, "n_t": n_t}
        for kind, split in controls.items():
            xc, yc = split.tensors()
            pc = predict(model, xc.to(ctx.device)).argmax(1).cpu()
            r[kind] = float((pc == yc).float().mean())
        return r

    @staticmethod
    def _ladder(
        ctx: LabContext,
        m: LoadedModel,
        test: Split,
        eps_grid: list[float],
        params: Any,
        base: float,
        span: float,
    ) -> dict[float, float]:
        """Accuracy under L∞ PGD at each ε (in /255) on the model's own test images; ε = 0 is clean."""
        x, y = test.tensors()
        x, y = x.to(ctx.device), y.to(ctx.device)
        out: dict[float, float] = {}
        for j, e in enumerate(eps_grid):
            ctx.progress(base + span * (0.1 + 0.8 * j / len(eps_grid)), f"{m.name}: PGD at ε = {e:g}/255")
            xa = attack(m.module, x, y, e / 255, params.attack_steps, params.seed)
            out[e] = float((predict(m.module, xa).argmax(1) == y).float().mean())
        return out

    @staticmethod
    def _on_versions(ctx: LabContext, m: LoadedModel, versions: torch.Tensor) -> dict[str, Any]:
        x = versions.to(ctx.device)
        probs = predict(m.module, x)
        cls = probs.argmax(1)
        out: dict[str, Any] = {
            "pred": [SHAPE_CLASSES[int(c)] for c in cls],
            "prob": [float(probs[i, c]) for i, c in enumerate(cls)],
        }
        target = cam_target(m.entry, m.module)
        if target.path:
            out["cam"] = gradcam(m.module, target, x, cls.tolist(), upsample=False)[:, 0].cpu().numpy()
        return out

    @staticmethod
    def _adversarial(ctx: LabContext, m: LoadedModel, x: torch.Tensor, params: Any) -> dict[str, Any]:
        """Untargeted PGD away from the model's own prediction on the image."""
        x = x[None].to(ctx.device)
        before = predict(m.module, x)[0]
        cls = int(before.argmax())
        eps = params.eps / 255
        xa = attack(m.module, x, torch.tensor([cls], device=ctx.device), eps, params.image_steps, params.seed)
        after = predict(m.module, xa)[0]
        delta = (xa - x)[0].permute(1, 2, 0).cpu().numpy()
        return {
            "before": SHAPE_CLASSES[cls],
            "p_before": float(before[cls]),
            "after": SHAPE_CLASSES[int(after.argmax())],
            "p_after": float(after.max()),
            "p_before_class_after": float(after[cls]),
            "delta": delta,
            "adversarial": xa[0].permute(1, 2, 0).cpu().numpy(),
            "linf": float(np.abs(delta).max()),
        }

    # --- summary ------------------------------------------------------------------------------------

    @staticmethod
    def _metrics(m: LoadedModel, r: dict[str, Any], params: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "training_set": m.entry.dataset,
            "train_eps_255": train_eps(m.entry),
            **r["bias"],
            # NaN (no shape or texture decision at all) is not JSON: None says "undefined" instead.
            "shape_bias": None if np.isnan(r["bias"]["shape_bias"]) else r["bias"]["shape_bias"],
            "shape_only_accuracy": r["shape-only"],
            "texture_only_accuracy": r["texture-only"],
            "clean_accuracy": r["clean_accuracy"],
            "robust_accuracy": r["robust_accuracy"],
            "attack": {"eps_255": params.eps, "steps": params.attack_steps, "n": params.attack_images},
            "ladder": {f"{e:g}": a for e, a in r["ladder"].items()},
            "predictions": dict(zip(VERSIONS, r["versions"]["pred"], strict=True)),
        }
        adv = r.get("adversarial")
        if adv:
            out["adversarial"] = {k: adv[k] for k in ("before", "p_before", "after", "p_after", "linf")}
        return out

    @staticmethod
    def _rung(mm: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "shape_bias",
            "clean_accuracy",
            "robust_accuracy",
            "shape_only_accuracy",
            "texture_only_accuracy",
        )
        return {k: mm[k] for k in keys}

    @staticmethod
    def _text(metrics: dict[str, Any], groups: dict[str, list[tuple[float, str]]], params: Any) -> str:
        models = [k for k in metrics if k not in ("example", "ladders")]
        parts = [
            f"{n}: shape bias {_fmt(metrics[n]['shape_bias'])} "
            f"(shape-only {metrics[n]['shape_only_accuracy']:.0%}, "
            f"texture-only {metrics[n]['texture_only_accuracy']:.0%}, robust at {params.eps:g}/255 "
            f"{metrics[n]['robust_accuracy']:.0%})"
            for n in models
        ]
        text = "Over cue-conflict images only: " + "; ".join(parts) + "."
        for data, rungs in groups.items():
            biases = ", ".join(f"{_fmt(metrics[name]['shape_bias'])} at ε = {e:g}" for e, name in rungs)
            text += f" Ladder on {TRAINING_SETS.get(data, data)}: shape bias {biases}."
        return text

    # --- figures ------------------------------------------------------------------------------------

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        per_model = result.arrays["per_model"]
        names = list(per_model)
        mets = result.metrics
        labels = [
            f"{n}<br>({TRAINING_SETS.get(mets[n]['training_set'], mets[n]['training_set'])})" for n in names
        ]
        figs = [
            plots.grouped_bars(
                labels,
                {"shape bias": [_num(mets[n]["shape_bias"]) for n in names]},
                "Shape bias per model: shape decisions / (shape + texture decisions), "
                "cue-conflict images only",
                yaxis_title="shape bias",
                yrange=(0.0, 1.05),
                horizontal=True,
            ),
            plots.grouped_bars(
                labels,
                {
                    "shape-only": [mets[n]["shape_only_accuracy"] for n in names],
                    "texture-only": [mets[n]["texture_only_accuracy"] for n in names],
                    "clean (own test split)": [mets[n]["clean_accuracy"] or 0.0 for n in names],
                    f"PGD ε = {params.eps:g}/255, {params.attack_steps} steps": [
                        mets[n]["robust_accuracy"] for n in names
                    ],
                },
                "Accuracy per model: the cue controls (chance 12.5%), clean and robust",
                yaxis_title="accuracy",
                yrange=(0.0, 1.05),
                horizontal=True,
            ),
        ]
        groups = result.arrays["ladders"]
        if groups:
            series: dict[str, tuple[list[float], list[float]]] = {}
            for data, rungs in groups.items():
                tag = TRAINING_SETS.get(data, data)
                eps = [e for e, _ in rungs]
                series[f"shape bias, {tag}"] = (eps, [_num(mets[n]["shape_bias"]) for _, n in rungs])
                series[f"clean accuracy, {tag}"] = (eps, [mets[n]["clean_accuracy"] or 0.0 for _, n in rungs])
                series[f"robust accuracy at {params.eps:g}/255, {tag}"] = (
                    eps,
                    [mets[n]["robust_accuracy"] for _, n in rungs],
                )
            figs.append(
                plots.xy_lines(
                    series,
                    "Robust-CNN ladder: shape bias and accuracy against the adversarial-training ε",
                    xaxis_title="training ε (/255)",
                    yaxis_title="shape bias / accuracy",
                )
            )
        figs.append(
            plots.matrix_heatmaps(
                [(n, per_model[n]["pairs"], [t[:6] for t in TEXTURES], list(SHAPE_CLASSES)) for n in names],
                "Each (shape row, texture column) pair: fraction of shape decisions among shape + texture "
                "decisions",
                zmin=0.0,
                zmax=1.0,
                colorbar_title="shape",
                cols=1,  # one matrix per row: 8×8 cells with written values need the width
            )
        )
        versions = result.arrays["versions"]
        rows = []
        for n in names:
            v = per_model[n]["versions"]
            cams = v.get("cam")
            cells = [
                (
                    f"{('image', 'texture-only', 'shape-only')[k]}<br>→ {v['pred'][k]} {v['prob'][k]:.0%}",
                    versions[k],
                    None if cams is None else cams[k],
                )
                for k in range(3)
            ]
            rows.append((n, cells))
        figs.append(
            plots.image_table(
                rows,
                f"{mets['example']}, its texture-only (patch-shuffled) and shape-only (silhouette) versions: "
                "each model's prediction and GradCAM",
                colorbar_title="GradCAM",
            )
        )
        adv_rows = []
        for n in names:
            a = per_model[n].get("adversarial")
            if a is None:
                continue
            e = params.eps / 255
            amplified = np.clip(0.5 + a["delta"] / (2 * e), 0, 1) if e > 0 else np.full_like(a["delta"], 0.5)
            adv_rows.append(
                (
                    n,
                    [
                        (f"before: {a['before']} {a['p_before']:.0%}", versions[0], None),
                        (
                            f"δ ×{1 / (2 * e) if e else 0:.0f} (max {a['linf'] * 255:.1f}/255)",
                            amplified,
                            None,
                        ),
                        (f"after: {a['after']} {a['p_after']:.0%}", a["adversarial"], None),
                    ],
                )
            )
        if adv_rows:
            figs.append(
                plots.image_table(
                    adv_rows,
                    f"PGD perturbation of the image, L∞ ε = {params.eps:g}/255, {params.image_steps} steps: "
                    "the perturbation amplified to the full range (grey = 0), the prediction before "
                    "and after",
                )
            )
        grid = [float(e) for e in result.arrays["eps_grid"]]
        figs.append(
            plots.xy_lines(
                {n: (grid, [per_model[n]["ladder"][e] for e in grid]) for n in names},
                f"Robustness ladder: accuracy under L∞ PGD ({params.attack_steps} steps) against attack ε, "
                f"{params.attack_images} test images of each model's own training set",
                xaxis_title="attack ε (/255)",
                yaxis_title="accuracy",
            )
        )
        return plots.add_notices(figs, NOTICES)


def _num(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _fmt(v: float | None) -> str:
    return "undefined (no shape or texture decision)" if v is None else f"{v:.2f}"
