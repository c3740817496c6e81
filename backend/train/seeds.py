"""`biaslab zoo seeds`: retrain a zoo model under other seeds and record the spread in its card.

One shipped file per model keeps the labs simple, but a comparison between two models (ConViT against
its DeiT-like control, issue 14) means little on one seed. So each extra seed is trained exactly as
`zoo train NAME --seed S` would (the seed draws the data splits and the initialisation), in a
scratch folder, and only its numbers are kept: the card gains a `seeds` block with one row per seed
(the shipped run included) and the mean and sample standard deviation over them.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

# `train_zoo_model(name, seed=, device=, out_dir=, progress=)`, passed in: this module sits below the CLI.
Trainer = Callable[..., dict[str, Any]]
TRAIN_PROBE = 2000  # training images scored per run: enough to tell fitting from generalising


def run_row(name: str, card: dict[str, Any], weights: Path) -> dict[str, Any]:
    """The numbers one seed contributes: the card's, plus accuracy on its first training images."""
    from safetensors.torch import load_file

    from backend.data import load_dataset
    from backend.models.registry import get_entry
    from backend.train.classifier import evaluate

    entry = get_entry(name)
    model = entry.builder()
    model.load_state_dict(load_file(str(weights)))
    seed = int(card["seed"])
    n = min(TRAIN_PROBE, int(card["split_sizes"]["train"]))
    x, y = load_dataset(entry.dataset, "train", n=int(card["split_sizes"]["train"]), seed=seed).tensors()
    return {
        "seed": seed,
        "test_accuracy": card["test_accuracy"],
        "ece": card["ece"],
        "val_accuracy": card["val_accuracy"],
        "train_accuracy": evaluate(model, x[:n], y[:n])["accuracy"],
        "train_probe": n,
        "final_train_loss": card["final_train_loss"],
        "wall_time_s": card["wall_time_s"],
    }


def train_seed(train: Trainer, name: str, seed: int, device: str) -> dict[str, Any]:
    """Train `name` under `seed` in a scratch folder; return its row (the weights are discarded)."""
    with tempfile.TemporaryDirectory(prefix=f"biaslab-{name}-seed{seed}-") as tmp:
        card = train(name, seed=seed, device=device, out_dir=Path(tmp), progress=False)
        return run_row(name, card, Path(tmp) / f"{name}.safetensors")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std (ddof=1; 0 for a single run) of each per-seed number."""
    out: dict[str, Any] = {"n": len(rows), "std": "sample (ddof=1)"}
    for key in ("test_accuracy", "ece", "train_accuracy", "final_train_loss"):
        v = np.array([r[key] for r in rows], dtype=float)
        out[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def record_seeds(
    names: list[str],
    seeds: list[int],
    *,
    train: Trainer,
    device: str = "cpu",
    jobs: int = 1,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Train every (name, seed) not yet in the card with `train` (`zoo train`'s function), then rewrite
    each card's `seeds` block.

    Rows already recorded are kept, so an interrupted run resumes where it stopped; each finished run
    is written at once.
    """
    from backend.config import get_settings
    from backend.models.registry import get_entry

    weights = get_settings().weights_dir
    cards = {n: json.loads((weights / f"{n}.json").read_text()) for n in names}
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for n, card in cards.items():
        rows[n] = {int(r["seed"]): r for r in card.get("seeds", {}).get("runs", [])}
        if int(card["seed"]) not in rows[n]:  # the shipped run is always one of the seeds
            rows[n][int(card["seed"])] = run_row(n, card, weights / f"{n}.safetensors")

    def write(n: str) -> None:
        ordered = [rows[n][s] for s in sorted(rows[n])]
        entry = get_entry(n)
        cards[n]["seeds"] = {
            "runs": ordered,
            "summary": summarise(ordered),
            "command": f"BIASLAB_TRAIN_THREADS=1 biaslab zoo seeds {n} --seeds "
            + " ".join(str(s) for s in sorted(rows[n])),
            "dataset": entry.dataset,
        }
        (weights / f"{n}.json").write_text(json.dumps(cards[n], indent=2) + "\n")

    todo = [(n, s) for n in names for s in seeds if s not in rows[n]]
    for n in names:
        write(n)
    bar = tqdm(total=len(todo), desc="seeds", disable=not progress)
    if jobs <= 1:  # in this process: also sees models registered at run time (plugins, tests)
        for n, s in todo:
            rows[n][s] = train_seed(train, n, s, device)
            write(n)
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures: dict[Future[dict[str, Any]], tuple[str, int]] = {
                pool.submit(train_seed, train, n, s, device): (n, s) for n, s in todo
            }
            for fut in as_completed(futures):
                n, s = futures[fut]
                rows[n][s] = fut.result()
                write(n)
                bar.update()
    bar.close()
    return {n: cards[n]["seeds"] for n in names}
