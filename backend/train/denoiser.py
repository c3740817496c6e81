"""Training loop for the bias-free UNet denoisers (Kadkhodaie et al., arXiv 2310.02557; METHODS §6b).

y = x + σz with x in [0, 1] and σ ~ U[0, σ_max] drawn per image; the loss is the squared error of
x̂ = f(y) summed over pixels and divided by the batch size, as in the paper's code. Adam with a cosine
decay. Device handling follows backend/train/classifier.py: the whole (small) training set moves to an
accelerator once; random numbers come from a CPU generator so a seed gives the same run anywhere.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from backend.config import get_settings
from backend.data import load_dataset
from backend.data.denoise_sets import gray_tensor

EVAL_SIGMAS = (0.05, 0.1, 0.2, 0.4, 0.8)
SUBSET_OFFSET = 1000  # subset "b" starts here in the 2000-image draw, so S₁ and S₂ never overlap


def training_images(recipe: dict[str, Any], seed: int) -> torch.Tensor:
    """(N, 1, 16, 16) in [0, 1]: the recipe's training split, or one of two disjoint subsets of it."""
    subset = recipe.get("subset")
    n = recipe.get("train_size")
    if subset is None:
        return gray_tensor(load_dataset(recipe["dataset"], "train", n=n, seed=seed).images)
    pool = gray_tensor(load_dataset(recipe["dataset"], "train", n=2 * SUBSET_OFFSET, seed=seed).images)
    start = 0 if subset == "a" else SUBSET_OFFSET
    if n is None or n > SUBSET_OFFSET:
        raise ValueError(f"a memorisation subset holds at most {SUBSET_OFFSET} images, got {n}")
    return pool[start : start + int(n)]


def train_denoiser(
    model: nn.Module,
    x: torch.Tensor,
    recipe: dict[str, Any],
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "train",
) -> list[float]:
    """Train in place on x (N, 1, H, W); returns the mean loss of each 100-step window."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    steps, bs = int(recipe["steps"]), int(recipe["batch_size"])
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=float(recipe["lr"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    x = x.to(device)
    losses: list[float] = []
    window = torch.zeros((), device=device)
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False, mininterval=1.0):
        idx = torch.randint(0, len(x), (bs,), generator=gen).to(device)
        sigma = (torch.rand(bs, 1, 1, 1, generator=gen) * float(recipe["sigma_max"])).to(device)
        noise = torch.randn((bs, *x.shape[1:]), generator=gen).to(device)
        xb = x[idx]
        loss = ((model(xb + sigma * noise) - xb) ** 2).sum() / bs
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), float(recipe["grad_clip"]))
        opt.step()
        sched.step()
        window += loss.detach()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            losses.append(float(window) / (100 if (step + 1) % 100 == 0 else (step + 1) % 100))
            window.zero_()
    model.eval()
    return losses


@torch.no_grad()
def denoising_psnr(model: nn.Module, x: torch.Tensor, sigmas: tuple[float, ...], seed: int = 0) -> dict:
    """PSNR (dB, peak 1) of x̂ and of the noisy input y, per σ, on fixed noise."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for s in sigmas:
        y = x + s * torch.randn(x.shape, generator=gen)
        mse = float(((model(y, s) - x) ** 2).mean())
        out[f"{s:g}"] = {"psnr": round(-10 * math.log10(mse), 3), "noisy_psnr": round(-20 * math.log10(s), 3)}
    return out


def train_denoiser_zoo_model(
    name: str, *, seed: int = 0, device: str = "cpu", out_dir: Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train one UNet from its recipe, write `<name>.safetensors` + `<name>.json`; returns the card."""
    from backend.models import get_entry
    from backend.train.artifacts import code_version, count_params, save_weights
    from backend.train.classifier import seed_everything

    entry = get_entry(name)
    recipe = entry.recipe
    out_dir = out_dir or get_settings().weights_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    x = training_images(recipe, seed)
    test = gray_tensor(load_dataset(recipe["dataset"], "test", n=recipe["test_size"], seed=seed).images)
    model = entry.builder()
    t0 = time.perf_counter()
    losses = train_denoiser(model, x, recipe, seed=seed, device=device, progress=progress, desc=name)
    model.cpu()
    card: dict[str, Any] = {
        "name": name,
        "family": entry.family,
        "task": entry.task,
        "dataset": entry.dataset,
        "train_images": len(x),
        "subset": recipe.get("subset"),
        "test_images": len(test),
        "seed": seed,
        "steps": int(recipe["steps"]),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "params": count_params(model),
        "loss_per_100_steps": [round(v, 4) for v in losses],
        "test_psnr": denoising_psnr(model, test, EVAL_SIGMAS, seed),
        "train_psnr": denoising_psnr(model, x[:200], EVAL_SIGMAS, seed),
        "code_version": code_version(),
        "recipe": recipe,
        "command": f"BIASLAB_TRAIN_THREADS={torch.get_num_threads()} biaslab zoo train {name} "
        f"--device {torch.device(device).type} --seed {seed}",
    }
    save_weights(model, out_dir / f"{name}.safetensors")
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def verify_denoiser(name: str, card: dict[str, Any], tolerance_db: float = 0.05) -> tuple[bool, str]:
    """Shipped weights against the card: the test PSNR at every σ, recomputed on the same noise."""
    from backend.models import create_model, get_entry

    recipe = get_entry(name).recipe
    seed = int(card["seed"])
    test = gray_tensor(load_dataset(recipe["dataset"], "test", n=recipe["test_size"], seed=seed).images)
    psnr = denoising_psnr(create_model(name), test, EVAL_SIGMAS, seed)
    worst = max(abs(psnr[s]["psnr"] - card["test_psnr"][s]["psnr"]) for s in card["test_psnr"])
    ok = worst <= tolerance_db
    return ok, f"{name}: test PSNR within {worst:.3f} dB of the card at every σ -> {'ok' if ok else 'FAIL'}"
