"""What every training writes beside its weights: the weights file itself, the parameter count and the
code version, shared by the classifier, denoiser and vision-language trainers."""

from __future__ import annotations

import subprocess
from pathlib import Path

from safetensors.torch import save_file
from torch import nn


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("inductive-bias-lab")
    except PackageNotFoundError:
        v = "0+unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        if out.returncode == 0:
            v += f"+g{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return v


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_weights(model: nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    path.chmod(0o644)  # safetensors creates 0600 files; shipped weights must be readable by everyone
