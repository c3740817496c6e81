"""Train the relational (same/different) models and write weights + card (+ ConViT gate history).

    BIASLAB_TRAIN_THREADS=1 python -m backend.train.relational convit-relational deit-relational \
        convit-nolocal-relational --seed 0

Same loop, evaluation, card fields and history as `biaslab zoo train` (backend/train/commands.py), reused
from there; only the dataset (backend/data/relational.py) and the models (backend/models/relational.py)
differ. One recipe for all three, so they differ only in architecture and initialisation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from backend.config import get_settings
from backend.data.relational import load_relational
from backend.models.relational import RELATIONAL_MODELS, RELATIONAL_RECIPE, relational_entry
from backend.train.classifier import evaluate, seed_everything, train_classifier
from backend.train.commands import code_version, count_params, save_weights
from backend.train.history import ConvitHistory


def train_relational(
    name: str,
    *,
    seed: int = 0,
    device: str = "cpu",
    out_dir: Path | None = None,
    steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    entry = relational_entry(name)
    recipe = {**RELATIONAL_RECIPE, **({"steps": steps} if steps is not None else {})}
    out_dir = out_dir or get_settings().weights_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    data = {
        s: load_relational(s, seed=seed, n=int(recipe[f"{s}_size"])).tensors()
        for s in ("train", "val", "test")
    }
    model = entry.builder()
    (xv, yv), (xt, yt) = data["val"], data["test"]
    history = ConvitHistory(xv[:256], xv, yv) if entry.family == "convit" else None
    n_steps = int(recipe["steps"])
    t0, c0 = time.perf_counter(), time.process_time()
    result = train_classifier(
        model,
        *data["train"],
        recipe,
        seed=seed,
        device=device,
        steps=n_steps,
        callback=history,
        callback_steps=ConvitHistory.schedule(n_steps) if history else None,
        progress=progress,
        desc=name,
    )
    model.cpu()
    test, val = evaluate(model, xt, yt), evaluate(model, xv, yv)
    train_sub = evaluate(model, data["train"][0][:2000], data["train"][1][:2000])
    card: dict[str, Any] = {
        "name": name,
        "family": entry.family,
        "dataset": "relational",
        "split_sizes": {s: len(data[s][1]) for s in data},
        "seed": seed,
        "steps": result.steps,
        "epochs": round(result.epochs, 3),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "cpu_time_s": round(time.process_time() - c0, 1),
        "train_wall_time_s": round(result.wall_time_s, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "test_accuracy": test["accuracy"],
        "ece": test["ece"],
        "val_accuracy": val["accuracy"],
        "train_accuracy_first_2000": train_sub["accuracy"],
        "chance_accuracy": 0.5,
        "params": count_params(model),
        "final_train_loss": result.losses[-1] if result.losses else None,
        "converged": False,  # a fixed CPU budget, not a convergence criterion: see the loss curve
        "train_loss_per_50_steps": [round(v, 4) for v in result.losses],
        "code_version": code_version(),
        "recipe": recipe,
        "local_init": entry.extra.get("local_init", entry.family == "convit"),
        "command": f"BIASLAB_TRAIN_THREADS={torch.get_num_threads()} python -m backend.train.relational "
        f"{name} --seed {seed}",
    }
    save_weights(model, out_dir / f"{name}.safetensors")
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    if history is not None:
        (out_dir / f"{name}.history.json").write_text(json.dumps(history.snapshots) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=RELATIONAL_MODELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    for name in args.names:
        card = train_relational(name, seed=args.seed, steps=args.steps, device=args.device, progress=False)
        print(
            f"{name}: test acc {card['test_accuracy']:.4f} (train {card['train_accuracy_first_2000']:.4f}), "
            f"loss {card['final_train_loss']:.4f}, {card['cpu_time_s']:.0f} CPU-s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
