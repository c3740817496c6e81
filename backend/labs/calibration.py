"""Calibration: reliability diagrams, ECE/MCE, temperature scaling and proximity bias, side by side.

Guo et al., On Calibration of Modern Neural Networks, ICML 2017 (temperature scaling, reliability
diagrams); Naeini et al., AAAI 2015 (ECE); Xiong et al., Proximity-Informed Calibration for Deep Neural
Networks, NeurIPS 2023 (arXiv 2306.04590; proximity, PIECE). Formulas in METHODS.md §4 and
`backend/labs/calibration_metrics.py`.

Per model: the temperature is fitted on the validation split, then the test (or shifted) split is
scored before and after it. Proximity is each image's closeness to the training data in the model's
penultimate embedding (K nearest training images). The user's image is placed among the test images:
its confidence, its proximity, and how often test images of the same confidence and proximity were
right.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from backend import plots
from backend.data import load_dataset
from backend.labs import calibration_metrics as cm
from backend.labs.base import Lab, LabContext, LabParams, LabResult, LoadedModel, register_lab
from backend.labs.probe import has_probe_set, preprocess_batch
from backend.models.preprocess import preprocess
from backend.models.registry import ModelEntry, get_entry

# "shifted": the cue-conflict images (a shape filled with another class's texture, labelled by its
# shape), a shift every shapes model meets; "test" is the model's own test split.
SHIFTED = "cue-conflict"
TEMPERATURES = np.round(np.geomspace(0.25, 4.0, 25), 3)  # slider grid; 1.0 is its middle
TERCILES = ("low", "middle", "high")  # proximity terciles, far from the training data first


class CalibrationParams(LabParams):
    data: Literal["test", "shifted"] = Field(
        default="test",
        description="Score on the test split, or on shifted images (shapes filled with another class's "
        "texture)",
    )
    n_images: int = Field(default=400, ge=100, le=2000, description="Images scored (and used to fit T)")
    n_bins: int = Field(default=15, ge=5, le=30, description="Confidence bins of the diagram and ECE")
    binning: Literal["equal-width", "equal-mass"] = Field(
        default="equal-width", description="Equal-width bins (the usual ECE) or equal-mass (adaptive) bins"
    )
    proximity: Literal["paper", "repo"] = Field(
        default="paper",
        description="Proximity formula: the paper's exp(−mean distance) or the official code's "
        "mean exp(−squared distance)",
    )
    k_neighbours: int = Field(default=10, ge=1, le=50, description="Nearest training images for proximity")
    reference_size: int = Field(
        default=800, ge=100, le=5000, description="Training images the proximity is measured against"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Which images are drawn")


def embed(model: nn.Module, x: torch.Tensor, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, K) and penultimate features (N, D), in batches, without gradients."""
    logits, feats = [], []
    features: Any = getattr(model, "forward_features", None)
    head: Any = getattr(model, "forward_head", None)
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            xb = x[start : start + batch]
            if callable(features) and callable(head):
                f = features(xb)
                feats.append(head(f, pre_logits=True).float().cpu())
                logits.append(head(f).float().cpu())
            else:  # no timm-style head: the logits stand in for the embedding
                z = model(xb).float().cpu()
                logits.append(z)
                feats.append(z)
    return torch.cat(logits).numpy(), torch.cat(feats).flatten(1).numpy()


# A model's logits and features on a split do not change between jobs, and scoring three splits was
# most of a calibration job. Keyed by the module itself, so reloaded weights (a new module) start afresh
# and an evicted model takes its entries with it.
SplitKey = tuple[str, str, int | None, int, str]  # dataset, split, n, seed, device
_EMBEDDINGS: weakref.WeakKeyDictionary[nn.Module, dict[SplitKey, tuple[np.ndarray, np.ndarray]]] = (
    weakref.WeakKeyDictionary()
)
_EMBEDDINGS_LOCK = threading.Lock()


def embed_split(
    model: nn.Module, dataset: str, split: str, n: int | None, seed: int, device: torch.device | str
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(the split, its logits, its features) for `model`; the embedding is computed once per module."""
    data = load_dataset(dataset, split, n=n, seed=seed)
    key = (dataset, split, n, seed, str(device))
    with _EMBEDDINGS_LOCK:
        hit = _EMBEDDINGS.get(model, {}).get(key)
    if hit is None:
        hit = embed(model, preprocess_batch(data.images, model).to(device))
        for array in hit:
            array.flags.writeable = False
        with _EMBEDDINGS_LOCK:
            _EMBEDDINGS.setdefault(model, {})[key] = hit
    return data, hit[0], hit[1]


@register_lab
class CalibrationLab(Lab):
    name = "calibration"
    title = "Calibration"
    description = (
        "How far each model's confidence matches its accuracy: reliability diagrams, ECE, "
        "temperature scaling, and proximity bias (over-confidence far from the training data)."
    )
    Params = CalibrationParams
    model_tasks = ("classification",)
    needs_image = False  # the user's image is optional: with one, the lab says where it falls
    max_models = 4
    default_models = ("cnn-shapes", "deit-shapes", "convit-shapes", "mixer-shapes")

    def request_problems(self, params: Any, models: list[str]) -> list[str]:
        # Refused at submission (422), in words: no statistics are borrowed from another dataset.
        return [p for p in (self._no_data(get_entry(n)) for n in models) if p]

    @staticmethod
    def _no_data(entry: ModelEntry) -> str | None:
        if has_probe_set(entry, "val") and entry.probe_set is None:
            return None
        if entry.model_set == "imagenet":
            return (
                f"{entry.name} was trained on ImageNet, and no labelled ImageNet validation images ship "
                "here, so its calibration cannot be measured; the shapes models' figures say nothing "
                "about it (the handful of ImageNet probe photos are far too few to bin confidences)"
            )
        return (
            f"{entry.name!r} was trained on {entry.dataset!r}; calibration needs its labelled "
            "validation and test images, which only the project's own datasets have here"
        )

    def run(self, ctx: LabContext, params: CalibrationParams) -> LabResult:  # type: ignore[override]
        for m in ctx.models:
            problem = self._no_data(m.entry)
            if problem:
                raise ValueError(problem)
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        n = len(ctx.models)
        for i, m in enumerate(ctx.models):
            # Each model against its own data: T from its validation split, proximity to its training split.
            count = 2 * params.n_images + params.reference_size
            ctx.progress(i / n, f"{m.name}: scoring {count} images")
            own, tested = m.entry.dataset, SHIFTED if params.data == "shifted" else m.entry.dataset
            splits = {
                "val": embed_split(m.module, own, "val", params.n_images, params.seed, ctx.device),
                "test": embed_split(m.module, tested, "test", params.n_images, params.seed, ctx.device),
                "ref": embed_split(m.module, own, "train", params.reference_size, params.seed, ctx.device),
            }
            arrays, scores = self._one_model(ctx, m, params, splits)
            per_model[m.name] = arrays
            metrics[m.name] = scores
        return LabResult(
            arrays={"per_model": per_model, "temperatures": TEMPERATURES},
            metrics=metrics,
            text=self._sentence(metrics, params),
        )

    def _one_model(
        self,
        ctx: LabContext,
        m: LoadedModel,
        params: CalibrationParams,
        splits: dict[str, tuple[Any, np.ndarray, np.ndarray]],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        (val, z_val, _), (test, z_test, h_test), (_, _, h_ref) = splits["val"], splits["test"], splits["ref"]
        y_val, y_test = val.labels, test.labels
        t_star = cm.fit_temperature(z_val, y_val)
        reference = cm.l2_normalise(h_ref)
        prox = cm.proximity(
            cm.knn_distances(reference, cm.l2_normalise(h_test), params.k_neighbours), params.proximity
        )
        out: dict[str, Any] = {"proximity": prox}
        scores: dict[str, Any] = {"temperature": t_star}
        for tag, temp in (("before", 1.0), ("after", t_star)):
            p = cm.probabilities(z_test, temp)
            conf, correct = p.max(1), (p.argmax(1) == y_test)
            rel = cm.reliability(conf, correct, params.n_bins, params.binning)
            scores[tag] = {
                "accuracy": float(correct.mean()),
                "ece": rel.ece,
                "mce": rel.mce,
                "nll": cm.nll(z_test, y_test, temp),
                "piece": cm.piece(conf, correct, prox, params.n_bins),
            }
            out[f"gap_by_proximity_{tag}"] = cm.gap_by_proximity(conf, correct, prox)
            scores[tag]["ece_by_proximity_tercile"] = [
                t["ece"] for t in self._terciles(conf, correct, prox, params)
            ]  # low, middle, high proximity
            if tag == "before":
                out["terciles"] = self._terciles(conf, correct, prox, params)
                out["conf"], out["correct"] = conf, correct
        out["slider"] = self._slider(z_test, y_test, params)
        if ctx.image is not None:
            scores["your_image"] = self._place_image(ctx, m, t_star, reference, out, params)
        return out, scores

    @staticmethod
    def _terciles(
        conf: np.ndarray, correct: np.ndarray, prox: np.ndarray, params: CalibrationParams
    ) -> list[dict[str, Any]]:
        idx, _ = cm.quantile_bins(prox, 3)
        parts = []
        for b in range(3):
            sel = idx == b
            rel = (
                cm.reliability(conf[sel], correct[sel], params.n_bins, params.binning) if sel.any() else None
            )
            parts.append(
                {
                    "confidence": rel.confidence if rel else np.array([]),
                    "accuracy": rel.accuracy if rel else np.array([]),
                    "count": rel.count if rel else np.array([]),
                    "ece": rel.ece if rel else float("nan"),
                    "n": int(sel.sum()),
                }
            )
        return parts

    @staticmethod
    def _slider(z: np.ndarray, y: np.ndarray, params: CalibrationParams) -> dict[str, Any]:
        """Per-bin curves at every slider temperature, so the browser redraws without a job."""
        acc, conf, count = [], [], []
        edges = None
        for temp in TEMPERATURES:
            p = cm.probabilities(z, float(temp))
            rel = cm.reliability(p.max(1), p.argmax(1) == y, params.n_bins, "equal-width")
            acc.append(rel.accuracy)
            conf.append(rel.confidence)
            count.append(rel.count)
            edges = rel.edges
        assert edges is not None
        centres = (edges[:-1] + edges[1:]) / 2
        return {"accuracy": acc, "confidence": conf, "count": count, "centres": centres}

    @staticmethod
    def _place_image(
        ctx: LabContext,
        m: LoadedModel,
        t_star: float,
        reference: np.ndarray,
        out: dict[str, Any],
        params: CalibrationParams,
    ) -> dict[str, Any]:
        assert ctx.image is not None
        z, h = embed(m.module, preprocess(ctx.image, m.module).to(ctx.device))
        p = cm.probabilities(z, 1.0)[0]
        d = cm.knn_distances(reference, cm.l2_normalise(h), params.k_neighbours)
        prox = float(cm.proximity(d, params.proximity)[0])
        conf, correct, test_prox = out["conf"], out["correct"], out["proximity"]
        # Test images like this one: the same confidence bin and the same proximity tercile.
        edges = cm.bin_edges(conf, params.n_bins)
        same_conf = cm.bin_index(conf, edges) == cm.bin_index(np.array([p.max()]), edges)[0]
        _, tercile_edges = cm.quantile_bins(test_prox, 3)
        t_idx = int(
            np.clip(np.searchsorted(tercile_edges, prox, side="right") - 1, 0, len(tercile_edges) - 2)
        )
        test_terc = np.clip(
            np.searchsorted(tercile_edges, test_prox, side="right") - 1, 0, len(tercile_edges) - 2
        )
        similar = same_conf & (test_terc == t_idx)
        return {
            "prediction": m.entry.class_names[int(p.argmax())],
            "confidence": float(p.max()),
            "confidence_after_scaling": float(cm.probabilities(z, t_star)[0].max()),
            "proximity": prox,
            "proximity_percentile": float((test_prox < prox).mean() * 100),
            "similar_test_images": int(similar.sum()),
            "similar_accuracy": float(correct[similar].mean()) if similar.any() else None,
        }

    @staticmethod
    def _sentence(metrics: dict[str, Any], params: CalibrationParams) -> str:
        parts = []
        for name, s in metrics.items():
            b, a = s["before"], s["after"]
            line = (
                f"{name}: ECE {b['ece']:.3f} → {a['ece']:.3f} with T = {s['temperature']:.2f} "
                f"(accuracy {b['accuracy']:.0%}, PIECE {b['piece']:.3f} → {a['piece']:.3f})"
            )
            img = s.get("your_image")
            if img:
                acc = img["similar_accuracy"]
                line += (
                    f"; your image: {img['prediction']} at {img['confidence']:.0%}, closer to the training "
                    f"data than {img['proximity_percentile']:.0f}% of test images"
                    + (
                        f", where similar test images were right {acc:.0%} of the time"
                        if acc is not None
                        else ", and no test image had that confidence and proximity"
                    )
                )
            parts.append(line)
        where = "the test split" if params.data == "test" else "shifted (texture-swapped) images"
        return f"On {where}: " + "; ".join(parts) + "."

    def figures(self, result: LabResult, params: CalibrationParams) -> list[dict[str, Any]]:  # type: ignore[override]
        per_model = result.arrays["per_model"]
        temps = [float(t) for t in result.arrays["temperatures"]]
        start = int(np.argmin(np.abs(np.asarray(temps) - 1.0)))
        fitted = {n: float(result.metrics[n]["temperature"]) for n in per_model}
        figs = [
            plots.reliability_diagrams(
                {n: per_model[n]["slider"] for n in per_model},
                temps,
                start,
                "Reliability diagrams: move the temperature to rescale every model's confidence",
                fitted=fitted,
                notice="Bins whose bar ends below the diagonal (an orange gap on top) are over-confident. "
                "Drag the temperature: above 1 it lowers every confidence, and the bars move left.",
            )
        ]
        names = list(per_model)
        figs.append(
            plots.grouped_bars(
                names,
                {
                    "ECE before": [result.metrics[n]["before"]["ece"] for n in names],
                    "ECE after temperature scaling": [result.metrics[n]["after"]["ece"] for n in names],
                    "PIECE before": [result.metrics[n]["before"]["piece"] for n in names],
                    "PIECE after": [result.metrics[n]["after"]["piece"] for n in names],
                },
                f"Calibration error ({params.n_bins} {params.binning} bins): temperature scaling lowers ECE; "
                "PIECE also counts proximity",
                yaxis_title="error",
                notice="Temperature scaling helps most where ECE was high; PIECE stays above ECE because it "
                "also splits images by how close they are to the training data.",
            )
        )
        gaps: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for n in names:
            gaps[n] = {}
            for tag, label in (("before", "before"), ("after", "after temperature scaling")):
                g = per_model[n][f"gap_by_proximity_{tag}"]
                gaps[n][label] = (list(g["proximity"]), list(g["gap"]))
        figs.append(
            plots.xy_panels(
                gaps,
                "Over-confidence against proximity to the training data (6 equal-count bins)",
                xaxis_title=f"proximity ({params.proximity}, K = {params.k_neighbours})",
                yaxis_title="confidence − accuracy",
                notice="The left end is the sixth of test images least like the training data. A curve "
                "that is highest on the left means over-confidence far from the training data, which one "
                "temperature for every image cannot remove.",
            )
        )
        terciles: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for n in names:
            parts = per_model[n]["terciles"]
            eces = " · ".join(f"{lb} {part['ece']:.3f}" for lb, part in zip(TERCILES, parts, strict=True))
            series: dict[str, tuple[list[float], list[float]]] = {}
            for label, part in zip(TERCILES, parts, strict=True):
                keep = np.asarray(part["count"]) > 0
                series[f"{label} proximity"] = (
                    list(np.asarray(part["confidence"])[keep]),
                    list(np.asarray(part["accuracy"])[keep]),
                )
            terciles[f"{n}<br>ECE {eces}"] = series
        figs.append(
            plots.xy_panels(
                terciles,
                "Reliability per proximity tercile: accuracy against confidence, diagonal = calibrated",
                xaxis_title="confidence",
                yaxis_title="accuracy",
                y_range=(-0.05, 1.05),
                diagonal=True,
                notice="Compare each model's low-proximity curve with its high-proximity one: the third of "
                "images far from the training data usually sits furthest from the diagonal.",
            )
        )
        return figs
