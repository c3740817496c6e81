"""Sample efficiency, as in the ConViT paper (d'Ascoli et al. 2021, arXiv 2103.10697, Fig. on data subsets).

ConViT, the DeiT-like ViT (same code, `local_up_to_layer=0`) and a small CNN are trained on fractions
f ∈ {5, 10, 25, 50, 100}% of a training set, several seeds each, with a *fixed number of optimiser steps*
so every run sees the same number of images (the paper rescales epochs by 1/f to the same end).
Subsets keep the first ⌊n_c·f⌋ samples of each class, as the official `make_subsampled_dataset` does.

CPU version (METHODS §11): scikit-learn digits upsampled to 16×16 (1257 training images, a genuinely
small-data regime), patch 2 (an 8×8 grid), `embed_dim=12` per head × 4 heads, depth 4, GPSA in the
first 3 layers. Results are measured and written as they come out; nothing is shaped to match the paper.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from backend.data.digits import DIGIT_CLASSES, load_digits_split
from backend.data.splits import class_fraction
from backend.models.zoo import ShapesCNN, build_convit
from backend.train.classifier import evaluate, seed_everything, train_classifier

IMAGE_SIZE = 16
SWEEP_RECIPE: dict[str, Any] = {
    "batch_size": 32,  # 5% of digits is only 63 images; small batches also keep 45 runs CPU-cheap
    "lr": 1e-3,
    "weight_decay": 0.05,
    "warmup_frac": 0.05,
    "label_smoothing": 0.0,
    "grad_clip": 1.0,
}
_VIT_KW: dict[str, Any] = dict(
    img_size=IMAGE_SIZE, patch_size=2, embed_dim=12, num_heads=4, depth=4, num_classes=len(DIGIT_CLASSES)
)
SWEEP_MODELS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "convit": ("ConViT, GPSA in layers 0-2", lambda: build_convit(local_up_to_layer=3, **_VIT_KW)),
    "deit": ("DeiT-like ViT (local_up_to_layer=0)", lambda: build_convit(local_up_to_layer=0, **_VIT_KW)),
    "cnn": ("ResNet-style CNN, width 16", lambda: ShapesCNN(num_classes=len(DIGIT_CLASSES), width=16)),
}


def run_sweep(
    fractions: list[float],
    seeds: int = 3,
    steps: int = 1000,
    device: str = "cpu",
    out: Path | None = None,
    models: list[str] | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train every (model, fraction, seed); write JSON after each run so a partial sweep is kept.

    `jobs` > 1 trains that many runs at once in spawned processes (tiny models leave a GPU mostly idle,
    so several runs share it); each run is seeded on its own, so the numbers do not depend on `jobs`.
    """
    models = models or list(SWEEP_MODELS)
    n_train, n_test = (len(load_digits_split(s, size=IMAGE_SIZE)) for s in ("train", "test"))
    result: dict[str, Any] = {
        "dataset": "digits",
        "image_size": IMAGE_SIZE,
        "train_size_full": n_train,
        "test_size": n_test,
        "steps": steps,
        "device": device,
        "recipe": SWEEP_RECIPE,
        "fractions": fractions,
        "seeds": list(range(seeds)),
        "models": {},
        "runs": [],
    }
    for m in models:
        result["models"][m] = {
            "description": SWEEP_MODELS[m][0],
            "params": sum(p.numel() for p in SWEEP_MODELS[m][1]().parameters()),
        }
    grid = [(m, f, s) for f in fractions for s in range(seeds) for m in models]
    done: dict[tuple[str, float, int], dict[str, Any]] = {}

    def record(key: tuple[str, float, int], run: dict[str, Any]) -> None:
        done[key] = run
        result["runs"] = [done[k] for k in grid if k in done]  # grid order, whatever finished first
        result["summary"] = summarise(result["runs"], models, fractions)
        if out is not None:
            out.write_text(json.dumps(result, indent=2) + "\n")

    bar = tqdm(total=len(grid), desc="sweep", disable=not progress)
    if jobs <= 1:
        for key in grid:
            record(key, train_one(*key, steps=steps, device=device))
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures: dict[Future[dict[str, Any]], tuple[str, float, int]] = {
                pool.submit(train_one, *key, steps=steps, device=device): key for key in grid
            }
            for fut in as_completed(futures):
                record(futures[fut], fut.result())
                bar.update()
    bar.close()
    return result


def train_one(model_name: str, fraction: float, seed: int, *, steps: int, device: str) -> dict[str, Any]:
    """One sweep run: train `model_name` on `fraction` of digits-train with `seed`, score on digits-test."""
    xtr, ytr = load_digits_split("train", size=IMAGE_SIZE).tensors()
    xte, yte = load_digits_split("test", size=IMAGE_SIZE).tensors()
    idx = torch.from_numpy(class_fraction(ytr.numpy(), fraction, len(DIGIT_CLASSES)))
    seed_everything(seed)
    model = SWEEP_MODELS[model_name][1]()
    t0 = time.perf_counter()
    train_classifier(
        model, xtr[idx], ytr[idx], SWEEP_RECIPE, seed=seed, device=device, steps=steps, progress=False
    )
    metrics = evaluate(model.cpu(), xte, yte)
    return {
        "model": model_name,
        "fraction": fraction,
        "seed": seed,
        "n_train": len(idx),
        "test_accuracy": metrics["accuracy"],
        "ece": metrics["ece"],
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }


def summarise(runs: list[dict[str, Any]], models: list[str], fractions: list[float]) -> dict[str, Any]:
    """Mean and std of test accuracy per model and fraction (None where no run finished yet)."""
    summary: dict[str, Any] = {}
    for m in models:
        means, stds, counts = [], [], []
        for f in fractions:
            accs = [r["test_accuracy"] for r in runs if r["model"] == m and r["fraction"] == f]
            means.append(float(np.mean(accs)) if accs else None)
            stds.append(float(np.std(accs)) if accs else None)
            counts.append(len(accs))
        summary[m] = {"mean": means, "std": stds, "n": counts}
    return summary
