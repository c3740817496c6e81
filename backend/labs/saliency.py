"""GradCAM and Integrated Gradients through captum, for CNNs and token models alike (METHODS.md §3).

- GradCAM (Selvaraju et al., ICCV 2017): captum `LayerGradCam(..., relu_attributions=True)` (captum's
  default leaves the ReLU out), upsampled with `LayerAttribution.interpolate(..., 'bilinear')`.
- Token models (ViT, ConViT, MLP-Mixer) hold (B, N, C) tokens, but captum wants channels in dim 1:
  `TokenGrid` wraps the target module and exposes a (B, C, h, w) view through an identity submodule.
  It is put in place only inside `token_grid_target(...)` and the original module comes back after.
- Integrated Gradients (Sundararajan et al., ICML 2017): captum `IntegratedGradients` with the
  convergence delta Σ IG − (F(x) − F(x′)) returned and shown.
- Expected gradients (Erion et al., Nature Machine Intelligence 2021): IG averaged over reference images.
- Sanity checks (Adebayo et al., NeurIPS 2018) live in `sanity.py`: the random model is rebuilt by the
  model's own builder. `randomised_copy` below is the earlier PyTorch-default re-initialisation, kept only
  to show what it got wrong (it wipes ConViT's locality initialisation).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from backend.labs.attention_maps import grid_size
from backend.labs.hooks import get_submodule, swapped_module
from backend.models.registry import ModelEntry


class TokenGrid(nn.Module):
    """Runs `inner`, then routes its patch tokens (B, N, C) through `grid`, an identity on (B, C, h, w)."""

    def __init__(self, inner: nn.Module, hw: tuple[int, int], n_prefix: int) -> None:
        super().__init__()
        self.inner, self.hw, self.n_prefix = inner, hw, n_prefix
        self.grid = nn.Identity()

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        x = self.inner(*args, **kwargs)  # (B, P + N, C)
        B, _, C = x.shape
        prefix, tokens = x[:, : self.n_prefix], x[:, self.n_prefix :]
        g = self.grid(tokens.transpose(1, 2).reshape(B, C, *self.hw))  # (B, C, h, w)
        return torch.cat([prefix, g.flatten(2).transpose(1, 2)], 1)


@dataclass(frozen=True)
class CamTarget:
    path: str  # dotted module path inside the model ("" = no spatial layer: GradCAM not defined)
    token_grid: bool
    n_prefix: int


_FAMILY_DEFAULTS = {
    "cnn": ("layer3", False, 0),
    "robust-cnn": ("layer3", False, 0),
    "vit": ("blocks.-1.norm1", True, 1),  # input of the last attention; the last block's output gets 0 grad
    "mixer": ("blocks.-1", True, 0),
}


def cam_target(entry: ModelEntry, model: nn.Module) -> CamTarget:
    """The GradCAM layer of a model: the registry's `gradcam` target, else a per-family rule (METHODS §3)."""
    if entry.gradcam is not None:
        return CamTarget(entry.gradcam.layer, entry.gradcam.token_grid, entry.gradcam.num_prefix_tokens)
    if entry.family == "convit":  # output of the last GPSA block: patch tokens only
        return CamTarget(f"blocks.{int(getattr(model, 'local_up_to_layer', 1)) - 1}", True, 0)
    if entry.family in _FAMILY_DEFAULTS:
        path, grid, prefix = _FAMILY_DEFAULTS[entry.family]
        if entry.family == "vit":
            prefix = int(getattr(model, "num_prefix_tokens", 1))
        return CamTarget(path, grid, prefix)
    return CamTarget("", False, 0)


@contextmanager
def gradcam_layer(model: nn.Module, target: CamTarget) -> Iterator[nn.Module]:
    """Yield the module captum should hook; for token models a TokenGrid is swapped in, then removed."""
    if not target.token_grid:
        yield get_submodule(model, target.path)
        return
    wrapper = TokenGrid(get_submodule(model, target.path), grid_size(model), target.n_prefix)
    with swapped_module(model, target.path, wrapper):
        yield wrapper.grid


def prepare_for_backward(model: nn.Module) -> None:
    """ConViT caches `rel_indices` on its first forward; made under inference_mode it cannot take part in
    autograd. Swap such a cache for an ordinary tensor with the same values (nothing else changes)."""
    for m in model.modules():
        rel = getattr(m, "rel_indices", None)
        if isinstance(rel, torch.Tensor) and rel.is_inference():
            m.rel_indices = rel.clone()


Targets = int | list[int] | torch.Tensor  # one class for the batch, or one per image


def gradcam(
    model: nn.Module, target: CamTarget, x: torch.Tensor, cls: Targets, *, upsample: bool = True
) -> torch.Tensor:
    """ReLU(Σ_k α_k A^k) at the target layer, (B, 1, h, w), optionally upsampled to x's size."""
    from captum.attr import LayerAttribution, LayerGradCam  # here: captum costs every process a second

    prepare_for_backward(model)
    with torch.enable_grad(), gradcam_layer(model, target) as layer:
        cam = LayerGradCam(model, layer).attribute(x, target=cls, relu_attributions=True)
    cam = cam.detach()
    if upsample:
        cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
    return cam


def integrated_gradients(
    model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, cls: Targets, n_steps: int = 32
) -> tuple[torch.Tensor, float]:
    """IG attributions (B, C, H, W) and the largest convergence delta |Σ IG − (F(x) − F(x′))| of the batch
    (Gauss–Legendre)."""
    attr, delta = integrated_gradients_batch(model, x, baseline, cls, n_steps)
    return attr, float(delta.abs().max())


def integrated_gradients_batch(
    model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, cls: Targets, n_steps: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG attributions (B, C, H, W) and the signed convergence delta per image, (B,)."""
    from captum.attr import IntegratedGradients

    prepare_for_backward(model)
    with torch.enable_grad():
        attr, delta = IntegratedGradients(model).attribute(
            x,
            baselines=baseline,
            target=cls,
            n_steps=n_steps,
            method="gausslegendre",
            internal_batch_size=max(x.shape[0], min(x.shape[0] * n_steps, 512)),  # memory cap
            return_convergence_delta=True,
        )
    return attr.detach(), delta.detach()


def expected_gradients(
    model: nn.Module, x: torch.Tensor, references: torch.Tensor, cls: int, n_steps: int = 32
) -> tuple[torch.Tensor, float]:
    """IG averaged over K reference images x′_k (B=1): a deterministic quadrature of expected gradients
    (Erion et al., Nature Machine Intelligence 2021, arXiv 1906.10670), E_k[IG(x; x′_k)].

    Completeness holds for the mean: Σ attr = F(x) − mean_k F(x′_k). Returns (1, C, H, W) and that delta.
    """
    K = references.shape[0]
    attr, delta = integrated_gradients_batch(model, x.expand(K, -1, -1, -1), references, cls, n_steps)
    return attr.mean(0, keepdim=True), float(delta.mean().abs())


def randomised_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deep copy with every weight re-initialised (the model itself is not touched). Superseded by
    `sanity.rebuild_random`: PyTorch defaults here erase initialisations that belong to the architecture.

    Modules with `reset_parameters` use their own init; parameters no such module owns (ConViT's
    cls_token, pos_embed, gating_param) are drawn from N(0, 0.02²).
    """
    clone = copy.deepcopy(model)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        reset: set[int] = set()
        with torch.no_grad():
            for m in clone.modules():
                if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                    m.reset_parameters()
                    reset.update(id(p) for p in m.parameters(recurse=False))
            for p in clone.parameters():
                if id(p) not in reset:
                    p.normal_(0.0, 0.02)
    finally:
        torch.random.set_rng_state(gen_state)
    return clone.eval()
