"""Context managers that touch a model only temporarily, and a fingerprint to prove they did.

Workers keep models loaded and share them between jobs, so a lab may hook or patch a model only for the
duration of a `with` block: every hook is removed, every flag and module restored, in `finally`, also
when the job is cancelled half-way (`ctx.progress` raises).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """`model.get_submodule` that also accepts negative list indices ("blocks.-1.norm1")."""
    module: Any = model
    for part in path.split("."):
        module = module[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)
    if not isinstance(module, nn.Module):
        raise ValueError(f"{path!r} is not a module of {type(model).__name__}")
    return module


def _parent_and_attr(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, attr = path.rpartition(".")
    parent = get_submodule(model, parent_path) if parent_path else model
    return parent, attr


@contextmanager
def capture(
    modules: dict[str, nn.Module], *, pre: bool = False, detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record each module's output (or, with pre=True, its first input) under its key while inside.

    The dict is overwritten by every forward pass, so read it after each call.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make(key: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any = None) -> None:
            value = args[0] if pre else output
            if isinstance(value, tuple):
                value = value[0]
            store[key] = value.detach() if detach else value

        return hook

    try:
        for key, module in modules.items():
            if pre:
                handles.append(module.register_forward_pre_hook(make(key)))
            else:
                handles.append(module.register_forward_hook(make(key)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def no_fused_attn(model: nn.Module) -> Iterator[None]:
    """Switch timm's fused attention off (so `attn_drop` sees the matrix) and restore each flag after."""
    saved = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    try:
        for m, _ in saved:
            setattr(m, "fused_attn", False)  # noqa: B010  (mypy: nn.Module attributes are Tensor | Module)
        yield
    finally:
        for m, flag in saved:
            setattr(m, "fused_attn", flag)  # noqa: B010


@contextmanager
def swapped_module(model: nn.Module, path: str, replacement: nn.Module) -> Iterator[nn.Module]:
    """Put `replacement` at dotted `path` while inside; the original module object comes back after."""
    parent, attr = _parent_and_attr(model, path)
    original = get_submodule(parent, attr)
    index = int(attr) if attr.lstrip("-").isdigit() else None
    container: Any = parent
    try:
        if index is not None:
            container[index] = replacement
        else:
            setattr(parent, attr, replacement)
        yield replacement
    finally:
        if index is not None:
            container[index] = original
        else:
            setattr(parent, attr, original)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside, each module's own training flag restored after."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """Everything a lab must leave as it found it: module types, hooks, flags, parameters, buffers."""
    modules = {}
    for name, m in model.named_modules():
        modules[name] = (
            type(m).__name__,
            id(m),
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(getattr(m, "_backward_pre_hooks", {})),
            getattr(m, "fused_attn", None),
            m.training,
        )
    params = {n: (p.requires_grad, p.detach().clone(), p.grad is None) for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers() if b is not None}
    return {"modules": modules, "params": params, "buffers": buffers}


def fingerprint_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (empty when the model is untouched)."""
    problems: list[str] = []
    if before["modules"] != after["modules"]:
        keys = set(before["modules"]) | set(after["modules"])
        for k in sorted(keys):
            if before["modules"].get(k) != after["modules"].get(k):
                problems.append(f"module {k!r}: {before['modules'].get(k)} -> {after['modules'].get(k)}")
    for kind in ("params", "buffers"):
        b, a = before[kind], after[kind]
        if set(b) != set(a):
            problems.append(f"{kind} names changed: {sorted(set(b) ^ set(a))}")
            continue
        for n in b:
            vb, va = (b[n], a[n]) if kind == "buffers" else (b[n][1], a[n][1])
            if kind == "params" and b[n][0] != a[n][0]:
                problems.append(f"param {n!r}: requires_grad {b[n][0]} -> {a[n][0]}")
            if kind == "params" and b[n][2] != a[n][2]:
                problems.append(f"param {n!r}: .grad was {'not ' if not b[n][2] else ''}None before, changed")
            if vb.shape != va.shape or not torch.equal(vb, va):
                problems.append(f"{kind[:-1]} {n!r} changed")
    return problems


def attention_blocks(model: nn.Module) -> list[Any]:
    """The transformer blocks whose `.attn` holds an attention matrix (timm ViT, DeiT, ConViT)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return []
    return [b for b in blocks if hasattr(b, "attn") and hasattr(b.attn, "attn_drop")]
