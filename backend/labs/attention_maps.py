"""Attention read-outs shared by the attention and gating labs (METHODS.md §1–§2).

- `extract_attention`: the attention matrices timm actually uses (hooked at each block's `attn_drop`,
  fused attention switched off only inside) together with each attention module's real input (a forward
  pre-hook on `blocks[i].attn`, i.e. the norm1 output), from one forward pass.
- `gpsa_components`: a GPSA layer's content and positional parts and its gates, recomputed from that
  input (d'Ascoli et al., arXiv 2103.10697; timm `timm/models/convit.py:GPSA.get_attention`).
- `mean_attention_distance`: Dosovitskiy et al. (ViT, Fig. 7), as `sayakpaul/probing-vits`
  `compute_mean_attention_dist`; ConViT's nonlocality is the same quantity in patch units.
- `attention_rollout`: Abnar & Zuidema 2020 (`samiraabnar/attention_flow:compute_joint_attention`).
- `gpsa_centres`: each head's positional centre Δ_h and locality strength α_h from `pos_proj`, as
  ConViT's `main.py` logs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from backend.labs.hooks import attention_blocks, capture, no_fused_attn


def is_gpsa(attn: Any) -> bool:
    return hasattr(attn, "gating_param") and hasattr(attn, "pos_proj")


def _patch_embed(model: nn.Module) -> Any:
    # timm ViT/ConViT call it patch_embed, timm MlpMixer calls it stem.
    for name in ("patch_embed", "stem"):
        module = getattr(model, name, None)
        if module is not None and hasattr(module, "grid_size"):
            return module
    raise ValueError(f"{type(model).__name__} has no patch embedding with a grid size")


def grid_size(model: nn.Module) -> tuple[int, int]:
    g = _patch_embed(model).grid_size
    return int(g[0]), int(g[1])  # type: ignore[index]


def patch_size(model: nn.Module) -> tuple[int, int]:
    p = _patch_embed(model).patch_size
    return (int(p[0]), int(p[1])) if isinstance(p, tuple | list) else (int(p), int(p))


def prefix_tokens(model: nn.Module, layer: int) -> int:
    """Prefix (CLS/distillation) tokens present at block `layer`: ConViT adds CLS at local_up_to_layer."""
    local = getattr(model, "local_up_to_layer", None)
    if local is not None:
        return 0 if layer < local else int(getattr(model, "num_prefix_tokens", 1))
    return int(getattr(model, "num_prefix_tokens", 0))


@dataclass
class AttentionCapture:
    attn: list[torch.Tensor]  # per layer (B, H, T, T): the matrix after attn_drop's input, as timm uses it
    inputs: list[torch.Tensor]  # per layer (B, T, C): the attention module's input (norm1 output)
    logits: torch.Tensor  # (B, classes)
    prefix: list[int] = field(default_factory=list)  # prefix tokens per layer


def extract_attention(model: nn.Module, x: torch.Tensor, *, keep_inputs: bool = True) -> AttentionCapture:
    """One forward pass under no_grad recording every block's attention and the attention's input."""
    blocks = attention_blocks(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no attention blocks to read")
    drops = {str(i): b.attn.attn_drop for i, b in enumerate(blocks)}
    attns = {str(i): b.attn for i, b in enumerate(blocks)} if keep_inputs else {}
    with torch.no_grad(), no_fused_attn(model), capture(drops) as out, capture(attns, pre=True) as inp:
        logits = model(x)
        attn = [out[str(i)] for i in range(len(blocks))]
        inputs = [inp[str(i)] for i in range(len(blocks))] if keep_inputs else []
    if any(a.dim() != 4 for a in attn):
        raise ValueError("attention hooks did not see (B, H, T, T) matrices")
    return AttentionCapture(attn, inputs, logits, [prefix_tokens(model, i) for i in range(len(blocks))])


def gpsa_components(a: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPSA layer `a` on its input x (B, N, C) -> content, positional (B, H, N, N), σ(λ) (H,), total.

    Same arithmetic as timm's `GPSA.get_attention`, split so the parts can be shown separately.
    """
    B, N, C = x.shape
    H = a.num_heads
    with torch.no_grad():
        q, k = a.qk(x).reshape(B, N, 2, H, C // H).permute(2, 0, 3, 1, 4)  # (B, H, N, d) each
        content = ((q @ k.transpose(-2, -1)) * a.scale).softmax(-1)  # (B, H, N, N)
        rel = a.get_rel_indices(N).to(x.dtype)  # (1, N, N, 3)
        pos = a.pos_proj(rel).permute(0, 3, 1, 2).softmax(-1).expand(B, -1, -1, -1)  # (B, H, N, N)
        g = torch.sigmoid(a.gating_param).view(1, -1, 1, 1)
        total = (1.0 - g) * content + g * pos
        total = total / total.sum(-1, keepdim=True)
    return content, pos, g.flatten(), total


def token_distances(grid: tuple[int, int], patch: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """(N, N) Euclidean distances between patch centres, in pixels (patch=(1,1): in patch units)."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    pos = torch.stack([rows.flatten() * patch[0], cols.flatten() * patch[1]], -1).float()  # (N, 2)
    return torch.cdist(pos, pos)


def mean_attention_distance(
    attn: torch.Tensor,
    grid: tuple[int, int],
    patch: tuple[int, int],
    n_prefix: int = 0,
    *,
    renormalise: bool = False,
) -> torch.Tensor:
    """Mean attention distance per image and head, (B, H), in pixels.

    attn is (B, H, T, T) with T = n_prefix + grid[0]*grid[1]. Prefix rows and columns are dropped; rows
    are not renormalised unless asked (then each row sums to 1 again instead of 1 - A[i, CLS]).
    """
    a = attn[..., n_prefix:, n_prefix:].float()  # (B, H, N, N)
    if renormalise:
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
    d = token_distances(grid, patch).to(a.device)  # (N, N)
    return (a * d).sum(-1).mean(-1)  # mean over queries i of Σ_j A_ij D_ij


def uniform_reference(grid: tuple[int, int], patch: tuple[int, int], n_prefix: int = 0) -> float:
    """Mean attention distance (pixels) of uniform attention, 1/T over all T = n_prefix + N tokens.

    With prefix tokens their columns are dropped without renormalising (as `mean_attention_distance`
    does by default), so the value is N/T times the mean patch-to-patch distance. A head near this line
    is unselective, not "global"."""
    d = token_distances(grid, patch)  # (N, N)
    n = d.shape[0]
    return float(d.mean()) * n / (n + n_prefix)


def attention_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Mean over queries of the entropy −Σ_j A_ij log A_ij (nats) of each row, (B, H), over all T tokens.

    Uniform attention gives log T, attention to a single token 0."""
    a = attn.float().clamp_min(0)
    ent = -(a * torch.log(a.clamp_min(1e-30))).sum(-1)  # (B, H, T); 0·log 0 = 0
    return ent.mean(-1)


def attention_rollout(
    attns: list[torch.Tensor], *, head_fusion: str = "mean", discard_ratio: float = 0.0, n_prefix: int = 1
) -> torch.Tensor:
    """Rollout over layers: Â = (A + I) row-normalised, R = Â_L ··· Â_1. attns: per layer (B, H, T, T).

    Head fusion and discard_ratio as in `jacobgil/vit-explain` (prefix entries are never discarded),
    with the row normalisation done with keepdim=True.
    """
    result: torch.Tensor | None = None
    for a in attns:
        if head_fusion == "mean":
            fused = a.mean(1)
        elif head_fusion == "max":
            fused = a.amax(1)
        elif head_fusion == "min":
            fused = a.amin(1)
        else:
            raise ValueError(f"unknown head_fusion {head_fusion!r}")
        fused = fused.float().clone()  # (B, T, T)
        if discard_ratio > 0:
            B, T, _ = fused.shape
            protected = torch.zeros(T, T, dtype=torch.bool, device=fused.device)
            protected[:n_prefix, :] = True
            protected[:, :n_prefix] = True
            flat = fused.reshape(B, -1)
            k = int(int((~protected).sum()) * discard_ratio)
            if k > 0:
                scores = flat.masked_fill(protected.flatten(), float("inf"))
                flat.scatter_(1, scores.topk(k, dim=-1, largest=False).indices, 0.0)
            fused = flat.reshape(B, T, T)
        eye = torch.eye(fused.shape[-1], device=fused.device)
        a_hat = fused + eye
        a_hat = a_hat / a_hat.sum(-1, keepdim=True)
        result = a_hat if result is None else a_hat @ result
    if result is None:
        raise ValueError("rollout needs at least one layer")
    return result


def gpsa_centres(attn: Any) -> dict[str, np.ndarray]:
    """Per head: centre (Δx, Δy) in patches, locality strength α = −w[:,2], span = −1/w[:,2].

    Readback of `pos_proj.weight` as in ConViT's `main.py`. A head with α <= 0 has no Gaussian centre
    (its positional term prefers far patches); its centre is NaN.
    """
    w = attn.pos_proj.weight.detach().float().cpu().numpy()  # (H, 3)
    alpha = -w[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        span = np.where(alpha > 0, -1.0 / w[:, 2], np.nan)
    return {"dx": w[:, 0] * span / 2, "dy": w[:, 1] * span / 2, "alpha": alpha, "span": span}


def gpsa_layers(model: nn.Module) -> list[int]:
    return [i for i, b in enumerate(attention_blocks(model)) if is_gpsa(b.attn)]


def gates(model: nn.Module) -> np.ndarray:
    """σ(λ) per GPSA layer and head, (L_gpsa, H)."""
    blocks = attention_blocks(model)
    rows = [
        torch.sigmoid(blocks[i].attn.gating_param.detach().float()).cpu().numpy() for i in gpsa_layers(model)
    ]
    return np.stack(rows) if rows else np.zeros((0, 0))


def gate_logit(sigma: float) -> float:
    """λ with σ(λ) = sigma; ±inf at the ends so σ is exactly 0 (content only) or 1 (positional only)."""
    if sigma <= 0.0:
        return float("-inf")
    if sigma >= 1.0:
        return float("inf")
    return float(np.log(sigma) - np.log1p(-sigma))


@contextmanager
def patched_gates(model: nn.Module, targets: dict[int, list[int] | None], sigma: float) -> Iterator[None]:
    """Set σ(λ) of the given GPSA layers (all heads, or a list of heads) while inside; the exact stored
    values come back afterwards, also when the body raises."""
    blocks = attention_blocks(model)
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    value = gate_logit(sigma)
    try:
        with torch.no_grad():
            for layer, heads in targets.items():
                if not is_gpsa(blocks[layer].attn):
                    raise ValueError(f"layer {layer} is not a gated (GPSA) layer")
                p = blocks[layer].attn.gating_param
                saved.append((p, p.detach().clone()))
                if heads is None:
                    p.fill_(value)
                else:
                    p[heads] = value
        yield
    finally:
        with torch.no_grad():
            for p, v in saved:
                p.copy_(v)
