"""Where does attention look? Attention maps, mean attention distance and rollout for ViTs and ConViT.

- Attention of one query patch, for a chosen layer and head, drawn over the image. For ConViT's gated
  positional self-attention (GPSA) layers it is shown three ways: the total the model uses, the content
  part softmax(q·k) and the positional part softmax(w·r) (d'Ascoli et al., ICML 2021, arXiv 2103.10697).
- Mean attention distance in pixels per head against layer (Dosovitskiy et al., ICLR 2021, Fig. 7),
  for every chosen model on one chart, over a probe set of test images and for this image, drawn against
  its references: uniform attention (with and without the class token; a head near it is unselective, not
  "global") and a 3×3 convolution on the same patch grid.
- Attention entropy per head, as a fraction of log T (uniform attention = 1), beside the distance.
- Attention rollout (Abnar & Zuidema, ACL 2020) from the layers where a CLS token exists.

Everything is read from each block's real input in one hooked forward pass (fused attention switched off
only inside a context manager), never recomputed from the patch embeddings.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from backend import plots
from backend.labs.attention_maps import (
    attention_entropy,
    attention_rollout,
    extract_attention,
    gpsa_components,
    grid_size,
    is_gpsa,
    mean_attention_distance,
    patch_size,
    uniform_reference,
)
from backend.labs.base import Lab, LabContext, LabParams, LabResult, register_lab
from backend.labs.hooks import attention_blocks
from backend.labs.probe import batches, has_probe_set, preprocess_batch, probe_images
from backend.models.preprocess import display_image, preprocess
from backend.models.registry import model_architecture

MAX_PROBE_IMAGES = 512  # probe_size × models: 256 images on 2 models took under a minute on one thread


NOTICES = (
    (
        "Attention of query patch",
        "In ConViT's gated layers the positional part is a blob around the query patch and the total mixes "
        "it with the content part by σ(λ); the DeiT-like ViT has content attention only.",
    ),
    (
        "Mean attention distance",
        "Compare each head with the dashed lines: near the 3×3-convolution line is local; near the uniform "
        "line means attending everywhere alike, which is unselective rather than learned long range.",
    ),
    ("entropy", "Entropy near 1 means a head spreads its attention evenly over every token."),
    ("rollout", "Bright patches are where the class token gathers information from, through all layers."),
)


class AttentionParams(LabParams):
    layer: int = Field(default=0, ge=0, le=47, description="Block whose attention to show (0 = first)")
    head: int = Field(default=0, ge=0, le=63, description="Attention head to show")
    query_row: int = Field(
        default=-1, ge=-1, le=255, description="Row of the query patch on the patch grid (-1 = centre)"
    )
    query_col: int = Field(
        default=-1, ge=-1, le=255, description="Column of the query patch on the patch grid (-1 = centre)"
    )
    renormalise: bool = Field(
        default=False,
        description="After dropping the CLS token's column, rescale each row to sum to 1 again before "
        "computing distances (off: as in the ViT paper's reference code)",
    )
    probe_size: int = Field(
        default=64,
        ge=0,
        le=256,
        description="Test images averaged for the mean-attention-distance chart (0 = this image only)",
    )
    rollout_head_fusion: Literal["mean", "max", "min"] = Field(
        default="mean", description="How heads are combined before rolling attention out over layers"
    )
    rollout_discard_ratio: float = Field(
        default=0.0,
        ge=0.0,
        le=0.99,
        description="Fraction of the weakest attention entries zeroed in rollout",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the probe set drawn from the test split")


def rounded(a: np.ndarray, digits: int = 3) -> Any:
    """Array -> nested lists of Python floats rounded for JSON metrics."""
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def conv_reference(grid: tuple[int, int], patch: tuple[int, int], kernel: int = 3) -> float:
    """Mean attention distance (pixels) of a uniform kernel×kernel 'attention' on the patch grid."""
    gh, gw = grid
    n = gh * gw
    r = torch.arange(n) // gw
    c = torch.arange(n) % gw
    near = ((r[:, None] - r[None, :]).abs() <= kernel // 2) & ((c[:, None] - c[None, :]).abs() <= kernel // 2)
    a = near.float() / near.float().sum(-1, keepdim=True)
    return float(mean_attention_distance(a[None, None], grid, patch)[0, 0])


@register_lab
class AttentionLab(Lab):
    name = "attention"
    title = "Attention locality"
    description = (
        "Attention maps of a chosen layer, head and query patch (ConViT's gated layers split into content "
        "and positional parts), mean attention distance per head against depth, and attention rollout."
    )
    Params = AttentionParams
    model_families = ("vit", "convit")
    max_models = 3
    default_models = ("convit-shapes", "deit-shapes")

    def request_problems(self, params: Any, models: list[str]) -> list[str]:
        problems = []
        work = params.probe_size * len(models)
        if work > MAX_PROBE_IMAGES:
            problems.append(f"too much work: probe images × models is {work:,}, at most {MAX_PROBE_IMAGES:,}")
        # Refused, not clamped: a box saying "layer 5" must never show layer 3.
        for name in models:
            arch = model_architecture(name)
            if arch is None:
                continue
            if params.layer >= arch["layers"]:
                problems.append(f"layer: {name} has layers 0–{arch['layers'] - 1}, not {params.layer}")
            if arch["heads"] and params.head >= arch["heads"]:
                problems.append(f"head: {name} has heads 0–{arch['heads'] - 1}, not {params.head}")
            grid = arch["patch_grid"] or [0, 0]
            for field, value, size in (
                ("query_row", params.query_row, grid[0]),
                ("query_col", params.query_col, grid[1]),
            ):
                if size and value >= size:
                    problems.append(
                        f"{field}: {name}'s patch grid has {size} rows and columns (0–{size - 1})"
                    )
        return problems

    def run(self, ctx: LabContext, params: Any) -> LabResult:
        if ctx.image is None:
            raise ValueError("the attention lab needs an image")
        per_model: dict[str, dict[str, Any]] = {}
        metrics: dict[str, Any] = {}
        notes: list[str] = []
        n_models = len(ctx.models)
        for mi, m in enumerate(ctx.models):
            base = mi / n_models
            ctx.progress(base, f"{m.name}: attention on the image")
            model = m.module
            blocks = attention_blocks(model)
            if not blocks:
                raise ValueError(f"{m.name} has no attention layers; choose a ViT or ConViT")
            grid, patch = grid_size(model), patch_size(model)
            layer = min(params.layer, len(blocks) - 1)
            heads = blocks[layer].attn.num_heads
            head = min(params.head, heads - 1)
            row = grid[0] // 2 if params.query_row < 0 else min(params.query_row, grid[0] - 1)
            col = grid[1] // 2 if params.query_col < 0 else min(params.query_col, grid[1] - 1)
            if (layer, head) != (params.layer, params.head):
                notes.append(
                    f"{m.name} has {len(blocks)} layers × {heads} heads: showing layer {layer}, head {head}"
                )
            q = row * grid[1] + col

            x = preprocess(ctx.image, model).to(ctx.device)
            cap = extract_attention(model, x)
            P = cap.prefix[layer]
            maps: dict[str, np.ndarray] = {"total": self._query_map(cap.attn[layer], head, P + q, P, grid)}
            attn_mod = blocks[layer].attn
            gate = None
            if is_gpsa(attn_mod):
                content, pos, g, total = gpsa_components(attn_mod, cap.inputs[layer])
                maps["content"] = self._query_map(content, head, q, 0, grid)
                maps["positional"] = self._query_map(pos, head, q, 0, grid)
                gate = float(g[head])
                metrics.setdefault(m.name, {})["recombination_max_abs_error"] = float(
                    (total - cap.attn[layer]).abs().max()
                )
            mad_image = np.stack(
                [
                    mean_attention_distance(a, grid, patch, p, renormalise=params.renormalise)[0]
                    .cpu()
                    .numpy()
                    for a, p in zip(cap.attn, cap.prefix, strict=True)
                ]
            )  # (L, H) pixels
            entropy_image = np.stack(
                [(attention_entropy(a)[0] / math.log(a.shape[-1])).cpu().numpy() for a in cap.attn]
            )  # (L, H) fraction of the uniform entropy log T
            first_cls = next((i for i, p in enumerate(cap.prefix) if p > 0), None)
            rollout = None
            if first_cls is not None:
                R = attention_rollout(
                    cap.attn[first_cls:],
                    head_fusion=params.rollout_head_fusion,
                    discard_ratio=params.rollout_discard_ratio,
                    n_prefix=cap.prefix[-1],
                )
                rollout = R[0, 0, cap.prefix[-1] :].reshape(grid).cpu().numpy()
            cap_prefix = list(cap.prefix)
            del cap

            mad_probe = entropy_probe = None
            if params.probe_size > 0 and has_probe_set(m.entry):  # else: this image only, said in the text
                mad_probe, entropy_probe = self._probe_mad(ctx, m, params, grid, patch, base, 1 / n_models)
            # Uniform attention per layer: with its prefix tokens' columns dropped (not renormalised), unless
            # rows are renormalised, when it is the patch-only value.
            uniform = np.array(
                [uniform_reference(grid, patch, 0 if params.renormalise else p) for p in cap_prefix]
            )

            per_model[m.name] = {
                "image": display_image(ctx.image, model),
                "maps": maps,
                "query": (row, col),
                "layer": layer,
                "head": head,
                "gate": gate,
                "gpsa": is_gpsa(attn_mod),
                "mad_image": mad_image,
                "mad_probe": mad_probe,
                "rollout": rollout,
                "rollout_from": first_cls,
                "conv_reference": conv_reference(grid, patch),
                "uniform_no_cls": uniform_reference(grid, patch, 0),
                "uniform_cls": uniform_reference(grid, patch, 1),
                "uniform_per_layer": uniform,
                "has_prefix": any(p > 0 for p in cap_prefix),
                "entropy_image": entropy_image,
                "entropy_probe": entropy_probe,
            }
            mm = metrics.setdefault(m.name, {})
            mm["mad_px_per_layer_image"] = rounded(mad_image.mean(1))
            mm["uniform_attention_px"] = {
                "without_cls": round(uniform_reference(grid, patch, 0), 3),
                "with_cls": round(uniform_reference(grid, patch, 1), 3),
            }
            mm["conv3x3_px"] = round(conv_reference(grid, patch), 3)
            mm["entropy_fraction_per_head_image"] = rounded(entropy_image)
            if mad_probe is not None and entropy_probe is not None:
                mm["mad_px_per_layer_probe"] = rounded(mad_probe.mean(1))
                mm["mad_px_per_head_probe"] = rounded(mad_probe)
                mm["mad_fraction_of_uniform_per_head_probe"] = rounded(mad_probe / uniform[:, None])
                mm["entropy_fraction_per_head_probe"] = rounded(entropy_probe)
            mm["patch_size_px"] = list(patch)
            if gate is not None:
                mm["gate_sigma_lambda"] = round(gate, 4)
        text = self._summary(per_model, params)
        if notes:
            text = text + " " + "; ".join(notes) + "."
        return LabResult(
            arrays={"per_model": per_model, "probe_size": params.probe_size}, metrics=metrics, text=text
        )

    @staticmethod
    def _query_map(
        attn: torch.Tensor, head: int, query: int, n_prefix: int, grid: tuple[int, int]
    ) -> np.ndarray:
        return attn[0, head, query, n_prefix:].reshape(grid).float().cpu().numpy()

    @staticmethod
    def _probe_mad(
        ctx: LabContext,
        m: Any,
        params: Any,
        grid: tuple[int, int],
        patch: tuple[int, int],
        base: float,
        span: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean attention distance (pixels) and entropy (fraction of log T) per layer and head, (L, H)."""
        images, _ = probe_images(m.entry, params.probe_size, params.seed)
        xs = preprocess_batch(images, m.module)
        total: torch.Tensor | None = None
        ent_total: torch.Tensor | None = None
        for start, xb in batches(xs, 64):
            ctx.progress(
                base + span * (0.2 + 0.8 * start / len(xs)), f"{m.name}: probe set {start}/{len(xs)}"
            )
            cap = extract_attention(m.module, xb.to(ctx.device), keep_inputs=False)
            mad = torch.stack(
                [
                    mean_attention_distance(a, grid, patch, p, renormalise=params.renormalise).sum(0)
                    for a, p in zip(cap.attn, cap.prefix, strict=True)
                ]
            )  # (L, H) summed over images
            ent = torch.stack([attention_entropy(a).sum(0) / math.log(a.shape[-1]) for a in cap.attn])
            total = mad if total is None else total + mad
            ent_total = ent if ent_total is None else ent_total + ent
        assert total is not None and ent_total is not None
        return (total / len(xs)).cpu().numpy(), (ent_total / len(xs)).cpu().numpy()

    @staticmethod
    def _summary(per_model: dict[str, dict[str, Any]], params: Any) -> str:
        parts = []
        for name, r in per_model.items():
            on_probe = r["mad_probe"] is not None
            mad = r["mad_probe"] if on_probe else r["mad_image"]
            ent = r["entropy_probe"] if on_probe else r["entropy_image"]
            frac = mad / r["uniform_per_layer"][:, None]
            where = f"probe set of {params.probe_size} test images" if on_probe else "this image"
            parts.append(
                f"{name}: mean attention distance {mad.mean(1)[0]:.1f} px in layer 0 → "
                f"{mad.mean(1)[-1]:.1f} px in layer {len(mad) - 1} ({where}); heads at "
                f"{frac.min():.0%}–{frac.max():.0%} of uniform "
                f"attention's distance, entropy {ent.min():.2f}–{ent.max():.2f} × log T"
            )
        first = next(iter(per_model.values()))
        refs = (
            f" References on this patch grid: uniform attention {first['uniform_no_cls']:.2f} px without the "
            f"class token ({first['uniform_cls']:.2f} px with it), a 3×3 convolution "
            f"{first['conv_reference']:.2f} px."
        )
        return "; ".join(parts) + "." + refs

    def figures(self, result: LabResult, params: Any) -> list[dict[str, Any]]:
        per_model = result.arrays["per_model"]
        panels: list[tuple[str, np.ndarray | None, np.ndarray, tuple[int, int] | None]] = []
        for name, r in per_model.items():
            for kind, heat in r["maps"].items():
                label = f"{name}: {kind}"
                if kind == "total" and r["gate"] is not None:
                    label += f" (σ(λ) = {r['gate']:.2f})"
                panels.append((label, r["image"], heat, r["query"]))
        first = next(iter(per_model.values()))
        figs = [
            plots.overlay_grid_marked(
                panels,
                f"Attention of query patch (row {first['query'][0]}, col {first['query'][1]}), "
                f"layer {first['layer']}, head {first['head']}",
                cols=min(len(panels), 3),
            )
        ]
        curves: dict[str, dict[str, np.ndarray]] = {}
        for name, r in per_model.items():
            kinds: dict[str, np.ndarray] = {}
            if r["mad_probe"] is not None:
                kinds[f"probe set (n={result.arrays['probe_size']})"] = r["mad_probe"]
            kinds["this image"] = r["mad_image"]
            curves[name] = kinds
        ref = {
            f"uniform attention, no class token ({first['uniform_no_cls']:.1f} px)": [
                first["uniform_no_cls"]
            ],
        }
        if any(r["has_prefix"] for r in per_model.values()) and not params.renormalise:
            ref[f"uniform attention with class token ({first['uniform_cls']:.1f} px)"] = [
                first["uniform_cls"]
            ]
        ref[f"3×3 convolution on the patch grid ({first['conv_reference']:.1f} px)"] = [
            first["conv_reference"]
        ]
        figs.append(
            plots.head_layer_scatter(
                curves,
                "Mean attention distance per head" + (" (rows renormalised)" if params.renormalise else ""),
                yaxis_title="mean attention distance (pixels)",
                references=ref,
            )
        )
        entropies: dict[str, dict[str, np.ndarray]] = {}
        for name, r in per_model.items():
            kinds = {}
            if r["entropy_probe"] is not None:
                kinds[f"probe set (n={result.arrays['probe_size']})"] = r["entropy_probe"]
            kinds["this image"] = r["entropy_image"]
            entropies[name] = kinds
        figs.append(
            plots.head_layer_scatter(
                entropies,
                "Attention entropy per head, as a fraction of uniform attention's log T "
                "(1 = attends everywhere equally, 0 = one token)",
                yaxis_title="entropy / log T",
                references={"uniform attention (1.0)": [1.0]},
            )
        )
        rollouts = [
            (f"{name}: rollout from layer {r['rollout_from']}", r["image"], r["rollout"])
            for name, r in per_model.items()
            if r["rollout"] is not None
        ]
        if rollouts:
            figs.append(plots.overlay_grid(rollouts, "Attention rollout: where the CLS token gathers from"))
        return plots.add_notices(figs, NOTICES)
