"""Training loops for the classifier zoo: standard cross-entropy, and L∞ PGD adversarial training.

Standard training: AdamW with linear warm-up then cosine decay (the DeiT/ConViT recipe, Touvron et al.
2021, without the heavy augmentation a procedural dataset does not need). Adversarial training follows
Madry et al. (ICLR 2018, arXiv 1706.06083), min_θ E max_{‖δ‖∞≤ε} L(f(x+δ), y), with the inner max by
PGD with a uniform random start and α = ε/4 (METHODS §5). Evaluation reports accuracy and the 15-bin
expected calibration error of Guo et al. (ICML 2017; `gpleiss/temperature_scaling` `_ECELoss`).

Determinism: one seed fixes the init, the batch order and PGD's random starts; deterministic kernels are
requested. Results are bitwise stable on one machine with a fixed thread count.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay
from torch import nn
from tqdm.auto import tqdm

StepCallback = Callable[[int, float, nn.Module], None]


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed torch/numpy, ask for deterministic kernels, fix the thread count (BIASLAB_TRAIN_THREADS, 2)."""
    threads = threads or int(os.environ.get("BIASLAB_TRAIN_THREADS", "2"))
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(threads)


@dataclass
class TrainResult:
    steps: int
    epochs: float
    wall_time_s: float
    losses: list[float] = field(default_factory=list)  # mean training loss per logging window
    train_acc: list[float] = field(default_factory=list)


def pgd_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L∞ PGD with random start: δ₀ ~ U[−ε, ε]; δ ← clip(δ + α·sign ∇δ L, −ε, ε); x + δ clipped to [0, 1].

    x is in [0, 1] pixel units (the zoo's models normalise internally). Returns the adversarial images,
    detached. The caller decides train/eval mode; parameters' .grad are left untouched.
    """
    delta = (torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1) * eps
    delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
    for _ in range(steps):
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += alpha * grad.sign()
            delta.clamp_(-eps, eps)
            delta.copy_((x + delta).clamp(0, 1) - x)
    return (x + delta).detach()


def cosine_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: dict[str, Any],
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    steps: int | None = None,
    callback: StepCallback | None = None,
    callback_steps: set[int] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train in place on x (N, 3, H, W) in [0, 1] and y (N,).

    recipe keys: batch_size, epochs (or `steps` here), lr, weight_decay, warmup_frac, label_smoothing,
    grad_clip, adv_eps/adv_steps/adv_alpha (PGD when adv_eps > 0). `callback(step, epoch, model)` runs at
    the steps in callback_steps (0 = before training), in eval mode under no_grad.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(y), int(recipe["batch_size"])
    per_epoch = max(1, math.ceil(n / bs))
    total = int(steps if steps is not None else round(float(recipe["epochs"]) * per_epoch))
    model.to(device).to(memory_format=torch.channels_last)  # ~1.7× faster convs on CPU
    groups = param_groups_weight_decay(model, float(recipe["weight_decay"]))
    opt = torch.optim.AdamW(groups, lr=float(recipe["lr"]), fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(total, int(total * recipe["warmup_frac"])))
    adv_eps = float(recipe.get("adv_eps", 0.0))
    result = TrainResult(steps=total, epochs=total / per_epoch, wall_time_s=0.0)
    callback_steps = callback_steps or set()

    def run_callback(step: int) -> None:
        if callback is not None and step in callback_steps:
            was = model.training
            model.eval()
            with torch.no_grad():
                callback(step, step / per_epoch, model)
            model.train(was)

    start = time.perf_counter()
    run_callback(0)
    model.train()
    order = torch.randperm(n, generator=gen)
    if device.type != "cpu":  # the whole set fits on an accelerator; batches are then gathered there
        x, y = x.to(device), y.to(device)
    # Running sums stay on the device: reading a loss every step would stall a GPU on each one.
    pos, window_n = 0, 0
    window_loss = torch.zeros((), device=device)
    window_acc = torch.zeros((), device=device)
    bar = tqdm(range(total), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    for step in bar:
        if pos + bs > n:  # new epoch: reshuffle; the tail that does not fill a batch is dropped
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + bs].to(device)
        pos += bs
        xb = x[idx].to(device).contiguous(memory_format=torch.channels_last)
        yb = y[idx].to(device)
        if adv_eps > 0:
            model.eval()  # attack with frozen BN statistics; train on the result below
            xb = pgd_linf(model, xb, yb, adv_eps, float(recipe["adv_alpha"]), int(recipe["adv_steps"]), gen)
            model.train()
        logits = model(xb)
        loss = F.cross_entropy(logits, yb, label_smoothing=float(recipe.get("label_smoothing", 0.0)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.get("grad_clip"):
            nn.utils.clip_grad_norm_(model.parameters(), float(recipe["grad_clip"]))
        opt.step()
        sched.step()
        window_loss += loss.detach() * len(yb)
        window_acc += (logits.argmax(1) == yb).sum()
        window_n += len(yb)
        if (step + 1) % 50 == 0 or step + 1 == total:
            result.losses.append(float(window_loss) / window_n)
            result.train_acc.append(float(window_acc) / window_n)
            bar.set_postfix(loss=f"{result.losses[-1]:.3f}", acc=f"{result.train_acc[-1]:.3f}")
            window_loss.zero_()
            window_acc.zero_()
            window_n = 0
        run_callback(step + 1)
    bar.close()
    model.eval()
    result.wall_time_s = time.perf_counter() - start
    return result


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits (N, K) in eval mode under no_grad (never inference_mode: ConViT caches tensors)."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat(
        [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    )


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins (lo, hi] (Guo et al. 2017)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Test accuracy and 15-bin ECE."""
    probs = torch.softmax(predict_logits(model, x), -1).numpy()
    labels = y.numpy()
    return {"accuracy": float((probs.argmax(1) == labels).mean()), "ece": ece(probs, labels)}


def robust_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10, seed: int = 0
) -> float:
    """Accuracy under L∞ PGD (α = 2.5·ε/steps, the MadryLab robustness convention)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    for i in range(0, len(x), 250):
        xa = pgd_linf(model, x[i : i + 250], y[i : i + 250], eps, 2.5 * eps / steps, steps, gen)
        with torch.no_grad():
            correct += int((model(xa).argmax(1) == y[i : i + 250]).sum())
    return correct / len(x)
