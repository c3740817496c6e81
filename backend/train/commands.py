"""`biaslab zoo ...`: train, list, verify the shipped zoo, and run the sample-efficiency sweep.

`train NAME` rebuilds a model from its recipe (backend/models/zoo.py `RECIPES`, copied into the card),
trains it on freshly generated `shapes` splits, and writes `<name>.safetensors` + `<name>.json`
(and, for ConViT, `<name>.history.json` with gates and nonlocality over training).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from backend.config import get_settings
from backend.data import load_dataset
from backend.train.artifacts import code_version, count_params, save_weights


def _splits(recipe: dict[str, Any], seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        s: load_dataset(recipe["dataset"], s, n=int(recipe[f"{s}_size"]), seed=seed).tensors()
        for s in ("train", "val", "test")
    }


def train_zoo_model(
    name: str, *, seed: int = 0, device: str = "cpu", out_dir: Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train one zoo model from its recipe and write weights + card (+ ConViT history). Returns the card."""
    from backend.models import get_entry
    from backend.train.classifier import evaluate, robust_accuracy, seed_everything, train_classifier
    from backend.train.history import ConvitHistory

    entry = get_entry(name)
    recipe = entry.recipe
    if recipe.get("trainer") == "denoiser":  # issue 12: the bias-free UNet denoisers
        from backend.train.denoiser import train_denoiser_zoo_model

        return train_denoiser_zoo_model(name, seed=seed, device=device, out_dir=out_dir, progress=progress)
    out_dir = out_dir or get_settings().weights_dir
    if entry.task == "vqa":  # the vision-language model has its own loop (backend/train/vlm.py)
        from backend.train.vlm import train_vlm

        vlm, vlm_card = train_vlm(name, seed=seed, device=device, progress=progress)
        vlm_card.update(params=count_params(vlm), code_version=code_version())
        out_dir.mkdir(parents=True, exist_ok=True)
        save_weights(vlm, out_dir / f"{name}.safetensors")
        (out_dir / f"{name}.json").write_text(json.dumps(vlm_card, indent=2) + "\n")
        return vlm_card
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    data = _splits(recipe, seed)
    model = entry.builder()
    (xv, yv), (xt, yt) = data["val"], data["test"]
    history = ConvitHistory(xv[:256], xv, yv) if entry.family == "convit" else None
    steps = int(recipe["steps"])
    t0 = time.perf_counter()
    result = train_classifier(
        model,
        *data["train"],
        recipe,
        seed=seed,
        device=device,
        steps=steps,
        callback=history,
        callback_steps=ConvitHistory.schedule(steps) if history else None,
        progress=progress,
        desc=name,
    )
    model.cpu()
    metrics = evaluate(model, xt, yt)
    val = evaluate(model, xv, yv)
    card: dict[str, Any] = {
        "name": name,
        "family": entry.family,
        "regime": entry.regime,
        "dataset": entry.dataset,
        "split_sizes": {s: len(data[s][1]) for s in data},
        "seed": seed,
        "steps": result.steps,
        "epochs": round(result.epochs, 3),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "train_wall_time_s": round(result.wall_time_s, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "test_accuracy": metrics["accuracy"],
        "ece": metrics["ece"],
        "val_accuracy": val["accuracy"],
        "params": count_params(model),
        "final_train_loss": result.losses[-1] if result.losses else None,
        "code_version": code_version(),
        "recipe": recipe,
        "command": f"BIASLAB_TRAIN_THREADS={torch.get_num_threads()} biaslab zoo train {name} "
        f"--device {torch.device(device).type} --seed {seed}",
    }
    if float(recipe.get("adv_eps", 0)) > 0:
        n = min(500, len(yt))
        card["robust_accuracy"] = {
            "eps": recipe["adv_eps"],
            "pgd_steps": 10,
            "n": n,
            "accuracy": robust_accuracy(model, xt[:n], yt[:n], float(recipe["adv_eps"]), steps=10),
        }
    save_weights(model, out_dir / f"{name}.safetensors")
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    if history is not None:
        (out_dir / f"{name}.history.json").write_text(json.dumps(history.snapshots) + "\n")
    return card


def verify_model(name: str, tolerance: float = 0.01, n: int | None = None) -> tuple[bool, str]:
    """Re-evaluate shipped weights on the card's test split; ok when within tolerance of the card."""
    from backend.models.registry import create_model, get_entry
    from backend.train.classifier import evaluate

    entry = get_entry(name)
    if entry.task == "vqa":
        from backend.train.vlm import verify_vlm

        return verify_vlm(name, tolerance, n)
    card = entry.card()
    if card is None:
        return False, f"{name}: no card"
    if "test_psnr" in card:  # issue 12: a denoiser is checked on its PSNR per noise level
        from backend.train.denoiser import verify_denoiser

        return verify_denoiser(name, card)
    size = int(card["split_sizes"]["test"])
    x, y = load_dataset(entry.dataset, "test", n=size, seed=int(card["seed"])).tensors()
    if n is not None:
        x, y = x[:n], y[:n]
    m = evaluate(create_model(name), x, y)
    if n is not None and n < size:  # a subset: its accuracy differs by sampling, allow ~3 std errors
        tolerance = max(tolerance, 3 * (0.25 / n) ** 0.5)
    d_acc = abs(m["accuracy"] - card["test_accuracy"])
    d_ece = abs(m["ece"] - card["ece"])
    ok = d_acc <= tolerance and (n is not None or d_ece <= tolerance)
    msg = (
        f"{name}: acc {m['accuracy']:.4f} (card {card['test_accuracy']:.4f}), "
        f"ece {m['ece']:.4f} (card {card['ece']:.4f}) on {len(y)} images -> {'ok' if ok else 'FAIL'}"
    )
    return ok, msg


def zoo_names() -> list[str]:
    from backend.models import list_models

    return [e.name for e in list_models() if e.source == "zoo" and e.recipe]


def cmd_train(args: argparse.Namespace) -> int:
    names = zoo_names() if args.all else list(args.names)
    if not names:
        print("name one or more models, or pass --all; see `biaslab zoo list`")
        return 2
    unknown = [n for n in names if n not in zoo_names()]
    if unknown:
        print(f"unknown zoo model(s): {', '.join(unknown)}; known: {', '.join(zoo_names())}")
        return 2
    for name in names:
        card = train_zoo_model(name, seed=args.seed, device=args.device)
        if "test_psnr" in card:  # a denoiser: PSNR per noise level instead of accuracy
            psnr = ", ".join(f"σ={s}: {v['psnr']:.1f} dB" for s, v in card["test_psnr"].items())
            print(f"{name}: test {psnr}; {card['params']} params, {card['wall_time_s']:.0f} s")
            continue
        ece = f", ECE {card['ece']:.4f}" if card.get("ece") is not None else ""
        print(
            f"{name}: test acc {card['test_accuracy']:.4f}{ece}, {card['params']} params, "
            f"{card['wall_time_s']:.0f} s"
        )
    return 0


def zoo_table() -> list[dict[str, Any]]:
    from backend.models import list_models

    rows = []
    for e in list_models():
        if e.source != "zoo":
            continue
        c = e.card() or {}
        spread = (c.get("seeds") or {}).get("summary", {})
        rows.append(
            {
                "name": e.name,
                "family": e.family,
                "regime": e.regime,
                "dataset": e.dataset,
                "params": c.get("params"),
                "test_accuracy": c.get("test_accuracy"),
                "ece": c.get("ece"),
                "wall_time_s": c.get("wall_time_s"),
                "steps": c.get("steps"),
                # issue 14: the spread over retrained seeds (`zoo seeds`), where it was measured
                "seeds": spread.get("n"),
                "test_accuracy_mean": spread.get("test_accuracy", {}).get("mean"),
                "test_accuracy_std": spread.get("test_accuracy", {}).get("std"),
            }
        )
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Model zoo (accuracy on each model's own test split)")
    columns = (
        "name",
        "family",
        "regime",
        "dataset",
        "params",
        "test acc",
        "mean ± std (seeds)",
        "ECE",
        "steps",
        "train s",
    )
    for col in columns:
        table.add_column(col)
    for r in zoo_table():

        def fmt(v: Any, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        table.add_row(
            r["name"],
            r["family"],
            r["regime"],
            r["dataset"],
            fmt(r["params"], ","),
            fmt(r["test_accuracy"], ".3f"),
            "-"
            if (r["seeds"] or 0) < 2  # one seed has no spread to show
            else f"{r['test_accuracy_mean']:.3f} ± {r['test_accuracy_std']:.3f} ({r['seeds']})",
            fmt(r["ece"], ".3f"),
            fmt(r["steps"], "d"),
            fmt(r["wall_time_s"], ".0f"),
        )
    Console().print(table)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    names = list(args.names) or zoo_names()
    failed = 0
    for name in names:
        ok, msg = verify_model(name, args.tolerance, args.n)
        print(msg)
        failed += not ok
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from backend.train.sweep import run_sweep

    out = Path(args.out) if args.out else get_settings().weights_dir / "sample_efficiency.json"
    run_sweep(
        fractions=args.fractions,
        seeds=args.seeds,
        steps=args.steps,
        device=args.device,
        out=out,
        jobs=args.jobs,
    )
    print(f"wrote {out}")
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from backend.train.seeds import record_seeds

    unknown = [n for n in args.names if n not in zoo_names()]
    if unknown:
        print(f"unknown zoo model(s): {', '.join(unknown)}; known: {', '.join(zoo_names())}")
        return 2
    from backend.models import get_entry

    # The spread is one of test accuracy: denoisers (PSNR) and the VLM have no such number.
    others = [n for n in args.names if get_entry(n).task != "classification" or not get_entry(n).card()]
    if others:
        print(f"zoo seeds compares classifiers with a shipped card; not: {', '.join(others)}")
        return 2
    for name, block in record_seeds(
        args.names, args.seeds, train=train_zoo_model, device=args.device, jobs=args.jobs
    ).items():
        acc, ece = block["summary"]["test_accuracy"], block["summary"]["ece"]
        seeds = ", ".join(str(r["seed"]) for r in block["runs"])
        print(
            f"{name}: test acc {acc['mean']:.4f} ± {acc['std']:.4f}, ECE {ece['mean']:.4f} ± "
            f"{ece['std']:.4f} over seeds {seeds} (sample std)"
        )
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    zoo = subparsers.add_parser("zoo", help="train, list and verify the model zoo; sample-efficiency sweep")
    sub = zoo.add_subparsers(dest="zoo_command", required=True)

    train = sub.add_parser("train", help="train zoo models from their recipes; writes weights + cards")
    train.add_argument("names", nargs="*", metavar="NAME")
    train.add_argument("--all", action="store_true", help="train every zoo model")
    train.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=cmd_train)

    seeds = sub.add_parser(
        "seeds", help="retrain zoo models under more seeds; their spread goes into the cards"
    )
    seeds.add_argument("names", nargs="+", metavar="NAME")
    seeds.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="seeds besides the shipped one")
    seeds.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    seeds.add_argument("--jobs", type=int, default=1, help="runs trained at once, in separate processes")
    seeds.set_defaults(func=cmd_seeds)

    lst = sub.add_parser("list", help="print the zoo as a table")
    lst.set_defaults(func=cmd_list)

    verify = sub.add_parser("verify", help="re-evaluate shipped weights; non-zero exit when off the card")
    verify.add_argument("names", nargs="*", metavar="NAME")
    verify.add_argument("--tolerance", type=float, default=0.01)
    verify.add_argument("--n", type=int, default=None, help="evaluate on the first N test images only")
    verify.set_defaults(func=cmd_verify)

    sweep = sub.add_parser(
        "sweep", help="sample efficiency: ConViT vs DeiT-like ViT vs CNN on data fractions"
    )
    sweep.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0])
    sweep.add_argument("--seeds", type=int, default=3)
    sweep.add_argument("--steps", type=int, default=1000)
    sweep.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    sweep.add_argument("--out", default=None)
    sweep.add_argument("--jobs", type=int, default=1, help="runs trained at once, in separate processes")
    sweep.set_defaults(func=cmd_sweep)
