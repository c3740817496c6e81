"""ConViT's gates: how much each head trusts position over content, and what happens if we override it.

In gated positional self-attention (d'Ascoli et al., ICML 2021, arXiv 2103.10697) every head mixes a
content attention and a positional attention, A = (1 − σ(λ))·content + σ(λ)·positional, with λ learned
and initialised to 1 (σ = 0.73: mostly positional, i.e. convolution-like). This lab shows

- σ(λ) per GPSA layer and head, as a heatmap;
- each head's positional centre Δ_h and locality strength α_h, read back from `pos_proj` as ConViT's
  `main.py` logs them (span = −1/w₃, Δ = (w₁, w₂)·span/2, α = −w₃);
- the gates and the nonlocality during training, from the zoo's history file;
- the same gates for ConViTs trained on a relational same/different-colour task (backend/data/relational.py),
  with and without the locality initialisation, beside the chosen model's, with their accuracies and
  how far each gate moved from its initial 0.73;
- a counterfactual: set one head's or one layer's gate (σ → 0: content only; σ → 1: position only),
  run the probe set again and compare accuracy, nonlocality and this image's prediction. The gates are
  patched only inside a context manager that restores the stored values exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from backend import plots
from backend.labs.attention_maps import (
    extract_attention,
    gates,
    gpsa_centres,
    gpsa_layers,
    grid_size,
    mean_attention_distance,
    patched_gates,
)
from backend.labs.base import Lab, LabContext, LabParams, LabResult, LoadedModel, register_lab
from backend.labs.hooks import attention_blocks
from backend.labs.probe import batches, preprocess_batch, probe_images
from backend.models.preprocess import preprocess
from backend.models.registry import ModelEntry, model_architecture

NOTICES = (
    (
        "gate σ(λ) per GPSA layer",
        "Every gate started at σ(1) = 0.73: values still near it mean training kept the positional "
        "(convolution-like) attention it was given.",
    ),
    (
        "Positional centre",
        "Each head attends around its own offset from the query, like one tap of a convolution kernel; "
        "bigger dots are more local heads.",
    ),
    (
        "two tasks side by side",
        "Compare the two tasks: gates that moved away from 0.73 on one task but not "
        "the other show what that task asked of the attention.",
    ),
    ("Same/different task", "Bars at the chance line mean the model did not learn the task."),
    ("gate σ(λ) during training", "Watch the scale: the gates moved by only a few hundredths over training."),
    (
        "nonlocality during training",
        "Nonlocality is the mean attention distance in patches; a line that barely moves means the "
        "locality came from the initialisation, not from training.",
    ),
    ("accuracy during training", "Accuracy rises while gates and nonlocality hardly change."),
    (
        "stored vs counterfactual",
        "Compare the two bars of each layer: the override changes how far that layer's heads attend.",
    ),
    ("probe set with", "A drop in accuracy when a gate is overridden shows how much the model relies on it."),
)


class GatingParams(LabParams):
    counterfactual: Literal["none", "head", "layer", "all"] = Field(
        default="layer",
        description="Which gates to override: one head, every head of one layer, every GPSA head, or none",
    )
    cf_layer: int = Field(default=0, ge=0, le=47, description="GPSA layer whose gate(s) to set")
    cf_head: int = Field(
        default=0, ge=0, le=63, description="Head whose gate to set (when overriding one head)"
    )
    cf_sigma: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Gate value σ(λ) to set: 0 = content attention only, 1 = positional (conv-like) only",
    )
    probe_size: int = Field(
        default=128, ge=16, le=512, description="Test images used to measure accuracy and nonlocality"
    )
    seed: int = Field(default=0, ge=0, description="Seed of the probe set drawn from the test split")
    compare_tasks: bool = Field(
        default=True,
        description="Also show the gates of the ConViTs trained on the relational same/different-colour task "
        "(with and without the local initialisation), side by side with the chosen model's",
    )


def history_path(entry: ModelEntry) -> Path | None:
    path = entry.weights_path
    return path.parent / f"{path.stem}.history.json" if path is not None else None


def load_history(entry: ModelEntry) -> list[dict[str, Any]] | None:
    """The training history the zoo writes next to the weights (a list of records), or None."""
    path = history_path(entry)
    if path is None or not path.exists():
        return None
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data.get("history") or data.get("records") or []
    return [r for r in data if isinstance(r, dict)] or None


def rounded(a: Any, digits: int = 4) -> Any:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def gate_move(history: list[dict[str, Any]] | None) -> float | None:
    """Largest |σ(λ) at the end − σ(λ) at step 0| over GPSA heads, from the training history."""
    if not history or "gates" not in history[0] or "gates" not in history[-1]:
        return None
    return float(np.abs(np.asarray(history[-1]["gates"]) - np.asarray(history[0]["gates"])).max())


def task_models() -> dict[str, dict[str, Any]]:
    """Gates, accuracy and gate movement of the relational-task models whose weights are shipped."""
    from backend.models.relational import (
        LOCAL_INIT,
        RELATIONAL_MODELS,
        load_relational_model,
        relational_entry,
    )

    out: dict[str, dict[str, Any]] = {}
    for name in RELATIONAL_MODELS:
        entry = relational_entry(name)
        if entry.weights_path is None or not entry.weights_path.exists():
            continue
        card = entry.card() or {}
        info: dict[str, Any] = {
            "task": "relational (same/different colour)",
            "test_accuracy": card.get("test_accuracy"),
            "chance": 0.5,
            "steps": card.get("steps"),
            "local_init": LOCAL_INIT.get(name),
        }
        if entry.family == "convit":
            _, model = load_relational_model(name)
            hist = load_history(entry)
            info.update(gates=gates(model), layers=gpsa_layers(model), gate_move=gate_move(hist))
        out[name] = info
    return out


@register_lab
class GatingLab(Lab):
    name = "gating"
    title = "ConViT gating"
    description = (
        "ConViT's gates σ(λ) per layer and head, each head's positional centre and locality strength, "
        "how they moved during training, and a counterfactual: override a gate and re-measure."
    )
    Params = GatingParams
    model_families = ("convit",)
    max_models = 2
    default_models = ("convit-shapes",)
    needs_image = False  # the image is optional: its prediction is compared when one is given

    def request_problems(self, params: Any, models: list[str]) -> list[str]:
        if params.counterfactual in ("none", "all"):
            return []
        problems = []
        for name in models:  # refused, not clamped: the box must say which gate was set
            arch = model_architecture(name)
            if arch is None:
                continue
            if params.cf_layer >= arch["gpsa_layers"]:
                problems.append(
                    f"cf_layer: {name} has gated (GPSA) layers 0–{arch['gpsa_layers'] - 1}, "
                    f"not {params.cf_layer}"
                )
            if params.counterfactual == "head" and arch["heads"] and params.cf_head >= arch["heads"]:
                problems.append(f"cf_head: {name} has heads 0–{arch['heads'] - 1}, not {params.cf_head}")
        return problems

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        texts: list[str] = []
        n_models = len(ctx.models)
        for mi, m in enumerate(ctx.models):
            base, span = mi / n_models, 1 / n_models
            ctx.progress(base, f"{m.name}: reading gates")
            model = m.module
            layers = gpsa_layers(model)
            if not layers:
                raise ValueError(f"{m.name} has no gated positional (GPSA) layers")
            blocks = attention_blocks(model)
            g = gates(model)  # (L_gpsa, H)
            centres = [gpsa_centres(blocks[i].attn) for i in layers]
            targets, cf_label = self._targets(params, layers, g.shape[1])

            images, labels = probe_images(m.entry, params.probe_size, params.seed)
            xs = preprocess_batch(images, model)
            x_img = preprocess(ctx.image, model) if ctx.image is not None else None
            ctx.progress(base + 0.1 * span, f"{m.name}: probe set with the stored gates")
            orig = self._measure(ctx, m, xs, x_img, base + 0.1 * span, 0.4 * span)
            cf = None
            if targets:
                with patched_gates(model, targets, params.cf_sigma):
                    cf = self._measure(ctx, m, xs, x_img, base + 0.5 * span, 0.4 * span)

            acc = float((orig["pred"] == labels).mean())
            r: dict[str, Any] = {
                "gates": g,
                "layers": layers,
                "centres": centres,
                "history": load_history(m.entry),
                "class_names": list(m.entry.class_names),
                "orig": orig,
                "cf": cf,
                "cf_label": cf_label,
                "cf_layer": next(iter(targets)) if targets else None,
                "accuracy": acc,
            }
            mm: dict[str, Any] = {
                "gate_sigma_lambda": rounded(g),
                "locality_strength": rounded(np.stack([c["alpha"] for c in centres])),
                "centre_dx": rounded(np.stack([c["dx"] for c in centres])),
                "centre_dy": rounded(np.stack([c["dy"] for c in centres])),
                "probe_accuracy": round(acc, 4),
                "nonlocality_patches": rounded(orig["nonlocality"]),
                "probe_size": int(len(labels)),
            }
            text = (
                f"{m.name}: mean gate σ(λ) {g.mean():.2f} (range {g.min():.2f}–{g.max():.2f}); "
                f"probe accuracy {acc:.1%}"
            )
            if cf is not None:
                cf_acc = float((cf["pred"] == labels).mean())
                r["cf_accuracy"] = cf_acc
                r["agreement"] = float((cf["pred"] == orig["pred"]).mean())
                mm.update(
                    counterfactual=cf_label,
                    cf_probe_accuracy=round(cf_acc, 4),
                    cf_agreement_with_original=round(r["agreement"], 4),
                    cf_nonlocality_patches=rounded(cf["nonlocality"]),
                )
                text += f"; with {cf_label}: {cf_acc:.1%} ({r['agreement']:.0%} of predictions unchanged)"
                if x_img is not None:
                    names = m.entry.class_names
                    mm["image_prediction"] = names[int(np.argmax(orig["image_probs"]))]
                    mm["cf_image_prediction"] = names[int(np.argmax(cf["image_probs"]))]
            if r["history"] is None:
                text += "; no training history file found"
            move = gate_move(r["history"])
            if move is not None:
                mm["largest_gate_move_in_training"] = round(move, 4)
                text += f"; its gates moved at most {move:.3f} from their initial 0.73 during training"
            per_model[m.name] = r
            metrics[m.name] = mm
            texts.append(text)
        tasks = task_models() if params.compare_tasks else {}
        for name, info in tasks.items():
            tm: dict[str, Any] = {
                "test_accuracy": info["test_accuracy"],
                "chance": info["chance"],
                "local_init": info["local_init"],
            }
            if "gates" in info:
                tm["gate_sigma_lambda"] = rounded(info["gates"])
                tm["gate_mean_per_layer"] = rounded(info["gates"].mean(1))
                tm["largest_gate_move_in_training"] = info["gate_move"]
            metrics[name] = tm
            if info["test_accuracy"] is not None:
                texts.append(f"{name}: test accuracy {info['test_accuracy']:.1%} (chance 50%)")
        return LabResult(
            arrays={"per_model": per_model, "tasks": tasks}, metrics=metrics, text=". ".join(texts) + "."
        )

    @staticmethod
    def _targets(params: Any, layers: list[int], heads: int) -> tuple[dict[int, list[int] | None], str]:
        if params.counterfactual == "none":
            return {}, "no override"
        s = f"σ(λ) = {params.cf_sigma:g}"
        if params.counterfactual == "all":
            return {i: None for i in layers}, f"every GPSA gate set to {s}"
        layer = (
            params.cf_layer
            if params.cf_layer in layers
            else layers[-1]
            if params.cf_layer > layers[-1]
            else layers[0]
        )
        if params.counterfactual == "layer":
            return {layer: None}, f"layer {layer} gates set to {s}"
        head = min(params.cf_head, heads - 1)
        return {layer: [head]}, f"layer {layer} head {head} gate set to {s}"

    @staticmethod
    def _measure(
        ctx: LabContext,
        m: LoadedModel,
        xs: torch.Tensor,
        x_img: torch.Tensor | None,
        base: float,
        span: float,
    ) -> dict[str, Any]:
        """Predictions and nonlocality (patch units, per layer and head) on the probe set; image probs."""
        model = m.module
        grid = grid_size(model)
        preds, total = [], None
        for start, xb in batches(xs, 64):
            ctx.progress(base + span * start / len(xs), f"{m.name}: probe {start}/{len(xs)}")
            cap = extract_attention(model, xb.to(ctx.device), keep_inputs=False)
            preds.append(cap.logits.argmax(-1).cpu())
            d = torch.stack(
                [
                    mean_attention_distance(a, grid, (1, 1), p).sum(0)
                    for a, p in zip(cap.attn, cap.prefix, strict=True)
                ]
            )  # (L, H) summed over images
            total = d if total is None else total + d
        assert total is not None
        out: dict[str, Any] = {
            "pred": torch.cat(preds).numpy(),
            "nonlocality": (total / len(xs)).cpu().numpy(),
        }
        if x_img is not None:
            with torch.no_grad():
                out["image_probs"] = torch.softmax(model(x_img.to(ctx.device)).float(), -1)[0].cpu().numpy()
        return out

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        figs: list[dict[str, Any]] = []
        per_model = result.arrays["per_model"]
        points: dict[str, tuple[list[float], list[float], list[float]]] = {}
        n_heads = 0
        for name, r in per_model.items():
            g = r["gates"]
            figs.append(
                plots.matrix_heatmap(
                    g,
                    f"{name}: gate σ(λ) per GPSA layer and head (1 = positional, 0 = content)",
                    x_labels=[f"head {h}" for h in range(g.shape[1])],
                    y_labels=[f"layer {i}" for i in r["layers"]],
                    zmin=0.0,
                    zmax=1.0,
                    colorbar_title="σ(λ)",
                )
            )
            for layer, c in zip(r["layers"], r["centres"], strict=True):
                heads = range(len(c["alpha"]))
                n_heads = max(n_heads, len(heads))
                points[f"{name} layer {layer}" if len(per_model) > 1 else f"layer {layer}"] = (
                    [float(np.nan_to_num(c["dx"][h])) for h in heads],
                    [float(np.nan_to_num(c["dy"][h])) for h in heads],
                    [float(c["alpha"][h]) for h in heads],
                )
        figs.append(
            plots.marker_scatter(
                points,
                "Positional centre Δ of each GPSA head (offset from the query, in patches); "
                "size = locality α",
                xaxis_title="Δx (patches, right +)",
                yaxis_title="Δy (patches, down +)",
                size_title="α",
                symbol_names=[f"head {h}" for h in range(n_heads)],
                square=True,
            )
        )
        tasks = result.arrays.get("tasks") or {}
        if tasks:
            figs.extend(self._task_figures(per_model, tasks))
        for name, r in per_model.items():
            figs.extend(self._history_figures(name, r))
            if r["cf"] is not None:
                figs.extend(self._counterfactual_figures(name, r))
        return plots.add_notices(figs, NOTICES)

    @staticmethod
    def _task_figures(per_model: dict[str, Any], tasks: dict[str, Any]) -> list[dict[str, Any]]:
        panels = []
        for name, r in per_model.items():
            g = r["gates"]
            panels.append(
                (
                    f"{name} (shapes)",
                    g,
                    [str(h) for h in range(g.shape[1])],
                    [str(i) for i in r["layers"]],
                )
            )
        for name, info in tasks.items():
            if "gates" not in info:
                continue
            g = info["gates"]
            init = "local init" if info["local_init"] else "no local init"
            panels.append(
                (
                    f"{name} (same/different colour, {init})",
                    g,
                    [str(h) for h in range(g.shape[1])],
                    [str(i) for i in info["layers"]],
                )
            )
        figs = [
            plots.matrix_heatmaps(
                panels,
                "Gates σ(λ) after training, two tasks side by side (all start at 0.73; "
                "1 = positional, 0 = content)",
                zmin=0.0,
                zmax=1.0,
                colorbar_title="σ(λ)",
                x_title="head",
                y_title="layer",
            )
        ]
        names = [n for n, info in tasks.items() if info["test_accuracy"] is not None]
        if names:
            figs.append(
                plots.grouped_bars(
                    names,
                    {
                        "test accuracy": [float(tasks[n]["test_accuracy"]) for n in names],
                        "chance": [float(tasks[n]["chance"]) for n in names],
                    },
                    "Same/different task: test accuracy of each architecture (same data, same steps)",
                    yaxis_title="accuracy",
                    yrange=(0.0, 1.05),
                )
            )
        return figs

    @staticmethod
    def _history_figures(name: str, r: dict[str, Any]) -> list[dict[str, Any]]:
        hist = r["history"]
        if not hist:
            return []
        figs = []
        steps = [float(h.get("step", i)) for i, h in enumerate(hist)]
        layers = r["layers"]
        for key, title, ylab in (
            ("gates", "gate σ(λ) during training", "σ(λ)"),
            ("nonlocality", "nonlocality during training", "nonlocality (patches)"),
        ):
            seqs = [h.get(key) for h in hist]
            if not all(isinstance(s, list) and s for s in seqs):
                continue
            arr = [np.asarray(s, dtype=float) for s in seqs]
            if len({a.shape for a in arr}) != 1 or arr[0].ndim != 2:
                continue
            stack = np.stack(arr)  # (T, L, H)
            series = {}
            for li in range(stack.shape[1]):
                label_layer = layers[li] if li < len(layers) else li  # history rows are GPSA layers
                for hh in range(stack.shape[2]):
                    series[f"L{label_layer} H{hh}"] = (stack[:, li, hh].tolist(), li, hh)
            figs.append(
                plots.styled_lines(steps, series, f"{name}: {title}", xaxis_title="step", yaxis_title=ylab)
            )
        acc = [h.get("val_acc") for h in hist]
        if all(isinstance(a, int | float) for a in acc):
            figs.append(
                plots.line_chart(
                    steps,
                    {"validation accuracy": [float(a) for a in acc]},  # type: ignore[arg-type]
                    f"{name}: validation accuracy during training",
                    xaxis_title="step",
                    yaxis_title="accuracy",
                )
            )
        return figs

    @staticmethod
    def _counterfactual_figures(name: str, r: dict[str, Any]) -> list[dict[str, Any]]:
        orig, cf = r["orig"], r["cf"]
        figs = [
            plots.grouped_bars(
                ["probe accuracy", "predictions unchanged"],
                {"stored gates": [r["accuracy"], 1.0], r["cf_label"]: [r["cf_accuracy"], r["agreement"]]},
                f"{name}: probe set with {r['cf_label']}",
                yrange=(0.0, 1.05),
            )
        ]
        cats = [f"layer {i}" for i in range(orig["nonlocality"].shape[0])]
        o_vals = list(orig["nonlocality"].mean(1))
        c_vals = list(cf["nonlocality"].mean(1))
        layer = r["cf_layer"]
        if layer is not None:
            heads = orig["nonlocality"].shape[1]
            cats += [f"L{layer} head {h}" for h in range(heads)]
            o_vals += list(orig["nonlocality"][layer])
            c_vals += list(cf["nonlocality"][layer])
        figs.append(
            plots.grouped_bars(
                cats,
                {"stored gates": o_vals, r["cf_label"]: c_vals},
                f"{name}: nonlocality (mean attention distance in patches), stored vs counterfactual",
                yaxis_title="patches",
            )
        )
        if "image_probs" in orig:
            figs.append(
                plots.grouped_bars(
                    r["class_names"],
                    {"stored gates": orig["image_probs"], r["cf_label"]: cf["image_probs"]},
                    f"{name}: this image's class probabilities",
                    yaxis_title="probability",
                    yrange=(0.0, 1.05),
                )
            )
        return figs
