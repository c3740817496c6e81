"""Training loop of the project's VLM (`vlm-clevr`, backend/models/vlm.py) on clevr-lite.

Next-token cross-entropy on the answer tokens only (the question and the image are context), AdamW with
linear warm-up then cosine decay (the zoo's schedule). Each step draws a batch of training scenes and
fresh questions about them, with the training prior (backend/data/clevr_lite.py); a `noimg_frac` of the
examples get the learned no-image token instead of their image. The card records the balanced-split
metrics for plain decoding and the yes-ratio without the image, which is where the prior shows.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from backend.data.clevr_lite import QA, load_clevr_lite, training_questions
from backend.data.splits import to_tensor
from backend.models.vlm import EOS, PAD, SEP, encode

IGNORE = -100


def batch_tensors(qas: list[QA]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, T) and targets (B, T): question <sep> answer <eos>, loss on what follows <sep>."""
    seqs, starts = [], []
    for qa in qas:
        q = encode(qa.question)
        seqs.append([*q, SEP, *encode(qa.answer), EOS])
        starts.append(len(q))  # input position of <sep>, which predicts the first answer token
    t = max(len(s) for s in seqs) - 1
    inputs = torch.full((len(qas), t), PAD, dtype=torch.long)
    targets = torch.full((len(qas), t), IGNORE, dtype=torch.long)
    for i, (s, start) in enumerate(zip(seqs, starts, strict=True)):
        inputs[i, : len(s) - 1] = torch.tensor(s[:-1])
        targets[i, start : len(s) - 1] = torch.tensor(s[start + 1 :])
    return inputs, targets


def train_vlm(
    name: str, *, seed: int = 0, device: str = "cpu", progress: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Train `name` from its recipe; the trained model (on the CPU) and its card, which `zoo train`
    completes (parameters, code version) and writes beside the weights."""
    from backend.labs.vlm_eval import Scorer, evaluate_balanced
    from backend.models import get_entry
    from backend.train.classifier import cosine_lambda, seed_everything

    entry = get_entry(name)
    recipe = entry.recipe
    seed_everything(seed)
    t0 = time.perf_counter()
    train = load_clevr_lite("train", int(recipe["train_size"]), seed)
    images = to_tensor(train.images)
    objects = train.meta["objects"]
    rng = np.random.default_rng([seed, 7])
    model = entry.builder().to(device).train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=float(recipe["lr"]), weight_decay=float(recipe["weight_decay"])
    )
    steps, bs = int(recipe["steps"]), int(recipe["batch_size"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(steps, int(steps * recipe["warmup_frac"])))
    losses: list[float] = []
    window: list[float] = []
    t_train = time.perf_counter()
    bar = tqdm(range(steps), desc=name, disable=not progress, mininterval=2.0)
    for step in bar:
        idx = rng.integers(0, len(objects), bs)
        inputs, targets = batch_tensors(training_questions(objects[idx], rng))
        has_image = torch.from_numpy(rng.random(bs) >= float(recipe["noimg_frac"]))
        logits = model(images[idx].to(device), inputs.to(device), has_image.to(device))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten(), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(recipe["grad_clip"]))
        opt.step()
        sched.step()
        window.append(float(loss.detach()))
        if (step + 1) % 100 == 0:
            losses.append(float(np.mean(window)))
            window = []
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    train_time = time.perf_counter() - t_train
    model.cpu().eval()
    metrics = evaluate_balanced(Scorer(model), int(recipe["test_size"]), seed=seed)
    card: dict[str, Any] = {
        "name": name,
        "family": entry.family,
        "regime": entry.regime,
        "dataset": entry.dataset,
        "split_sizes": {"train": int(recipe["train_size"]), "test": int(recipe["test_size"])},
        "seed": seed,
        "steps": steps,
        "epochs": round(steps * bs / int(recipe["train_size"]), 3),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "train_wall_time_s": round(train_time, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "test_accuracy": metrics["plain"]["accuracy"],
        "yes_ratio_without_image": metrics["yes_ratio_without_image"],
        "balanced_metrics": metrics,
        "loss_every_100_steps": [round(v, 4) for v in losses],
        "final_train_loss": losses[-1] if losses else None,
        "recipe": recipe,
        "command": f"BIASLAB_TRAIN_THREADS={torch.get_num_threads()} biaslab zoo train {name} "
        f"--device {torch.device(device).type} --seed {seed}",
    }
    return model, card


def verify_vlm(name: str, tolerance: float = 0.01, n: int | None = None) -> tuple[bool, str]:
    """Re-measure the shipped VLM's balanced accuracy and no-image yes-ratio against its card."""
    from backend.labs.vlm_eval import Scorer, evaluate_balanced
    from backend.models.registry import create_model, get_entry

    card = get_entry(name).card()
    if card is None:
        return False, f"{name}: no card"
    size = int(card["split_sizes"]["test"])
    m = evaluate_balanced(Scorer(create_model(name)), n if n is not None else size, seed=int(card["seed"]))
    if n is not None and n < size:  # a subset: allow ~3 standard errors of a proportion
        tolerance = max(tolerance, 3 * (0.25 / (n * 5 / 6)) ** 0.5)
    d_acc = abs(m["plain"]["accuracy"] - card["test_accuracy"])
    ok = d_acc <= tolerance
    msg = (
        f"{name}: balanced acc {m['plain']['accuracy']:.4f} (card {card['test_accuracy']:.4f}), "
        f"no-image yes-ratio {m['yes_ratio_without_image']:.3f} (card {card['yes_ratio_without_image']:.3f}) "
        f"on {m['n_questions']} questions -> {'ok' if ok else 'FAIL'}"
    )
    return ok, msg
