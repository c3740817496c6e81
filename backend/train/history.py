"""ConViT gating and nonlocality history during training (d'Ascoli et al. 2021, arXiv 2103.10697).

At each snapshot, for every GPSA layer and head: the gate σ(λ_h), the nonlocality
D_h = (1/N) Σ_ij Ā_h[i,j]·‖δ_ij‖ (patch units) on a fixed probe batch, the positional centre Δ_h and the
locality strength α_h read back from `pos_proj` (facebookresearch/convit `main.py`), and val accuracy.

Nonlocality is computed on each block's *real* input, captured by forward pre-hooks on the GPSA modules
during a full forward pass — not on the raw `patch_embed` output that the official logging feeds to
every block (DESIGN pitfalls). Runs under `torch.no_grad()` (never `inference_mode`: ConViT caches
`rel_indices` on its first forward, and an inference tensor there breaks later backward passes).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.convit import GPSA
from torch import nn


def gpsa_layers(model: nn.Module) -> list[GPSA]:
    blocks: Any = model.blocks
    return [b.attn for b in blocks if isinstance(b.attn, GPSA)]


@torch.no_grad()
def gpsa_snapshot(model: nn.Module, probe: torch.Tensor) -> dict[str, Any]:
    """Gates, nonlocality (on hooked real inputs), centres and strengths of every GPSA layer."""
    layers = gpsa_layers(model)
    inputs: dict[int, torch.Tensor] = {}
    handles = [
        a.register_forward_pre_hook(lambda _m, args, i=i: inputs.__setitem__(i, args[0].detach()))
        for i, a in enumerate(layers)
    ]
    try:
        model.eval()
        model(probe)
    finally:
        for h in handles:
            h.remove()
    gates, nonloc, centres, strength = [], [], [], []
    for i, a in enumerate(layers):
        x = inputs[i]  # (B, N, C): the norm1 output the block really attends over
        attn = a.get_attention(x).mean(0)  # (H, N, N), batch-averaged
        dist = a.rel_indices[0, :, :, 2].sqrt()  # (N, N) patch-grid distances
        nonloc.append((torch.einsum("nm,hnm->h", dist, attn) / dist.shape[0]).tolist())
        gates.append(torch.sigmoid(a.gating_param).tolist())
        w = a.pos_proj.weight  # (H, 3)
        span = -1.0 / w[:, 2]
        centres.append(torch.stack([w[:, 0] * span / 2, w[:, 1] * span / 2], 1).tolist())
        strength.append((-w[:, 2]).tolist())
    return {"gates": gates, "nonlocality": nonloc, "centres": centres, "locality_strength": strength}


class ConvitHistory:
    """Training callback collecting snapshots: `history(step, epoch, model)`."""

    def __init__(
        self, probe: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, n_val: int = 1000
    ) -> None:
        self.probe, self.x_val, self.y_val = probe, x_val[:n_val], y_val[:n_val]
        self.snapshots: list[dict[str, Any]] = []

    @staticmethod
    def schedule(total_steps: int, n: int = 12) -> set[int]:
        """Step 0 plus n roughly even points up to the end (denser early, where gates move most)."""
        fracs = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0][:n]
        return {0, *(max(1, round(f * total_steps)) for f in fracs)}

    def __call__(self, step: int, epoch: float, model: nn.Module) -> None:
        device = next(model.parameters()).device
        snap = gpsa_snapshot(model, self.probe.to(device))
        preds = torch.cat(
            [
                model(self.x_val[i : i + 500].to(device)).argmax(1).cpu()
                for i in range(0, len(self.x_val), 500)
            ]
        )
        val_acc = float((preds == self.y_val).float().mean())
        self.snapshots.append({"step": step, "epoch": round(epoch, 4), **snap, "val_acc": val_acc})
