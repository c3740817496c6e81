"""Attention read-outs checked against independent calculations (METHODS.md §1–§2)."""

from __future__ import annotations

import math

import pytest
import torch
from timm.models.convit import ConVit
from timm.models.vision_transformer import VisionTransformer

from backend.labs.attention_maps import (
    attention_rollout,
    extract_attention,
    gates,
    gpsa_centres,
    gpsa_components,
    mean_attention_distance,
    patched_gates,
)
from backend.labs.hooks import capture, fingerprint, fingerprint_diff, no_fused_attn


def tiny_convit(seed: int = 0) -> ConVit:
    torch.manual_seed(seed)
    model = ConVit(
        img_size=16, patch_size=4, embed_dim=8, num_heads=4, depth=3, local_up_to_layer=2, num_classes=3
    ).eval()
    with torch.no_grad():  # move gates and positional weights off their init so every term matters
        for blk in model.blocks[:2]:
            blk.attn.gating_param.copy_(torch.randn(4))
            blk.attn.pos_proj.weight.add_(0.3 * torch.randn_like(blk.attn.pos_proj.weight))
        model(torch.rand(1, 3, 16, 16))  # fills ConViT's rel_indices cache before fingerprints
    return model


def test_gpsa_parts_recombine_into_the_attention_timm_uses() -> None:
    model = tiny_convit()
    x = torch.rand(2, 3, 16, 16)
    seen: dict[int, torch.Tensor] = {}
    inputs: dict[int, torch.Tensor] = {}
    handles = []
    for i, blk in enumerate(model.blocks[:2]):
        # Independent of the lab helpers: what attn_drop receives, and the attention module's real input.
        drop = blk.attn.attn_drop
        handles.append(drop.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, a[0])))
        handles.append(blk.attn.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0])))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for i in range(2):
        attn = model.blocks[i].attn
        content, pos, g, total = gpsa_components(attn, inputs[i])
        assert torch.allclose(g, torch.sigmoid(attn.gating_param))
        assert (total - seen[i]).abs().max().item() < 1e-6
        recombined = (1 - g.view(1, -1, 1, 1)) * content + g.view(1, -1, 1, 1) * pos
        assert (recombined / recombined.sum(-1, keepdim=True) - seen[i]).abs().max().item() < 1e-6
        assert torch.allclose(content.sum(-1), torch.ones(())) and torch.allclose(pos.sum(-1), torch.ones(()))
    # The lab's own extraction sees the same matrices and inputs.
    cap = extract_attention(model, x)
    assert torch.equal(cap.attn[0], seen[0]) and torch.equal(cap.inputs[1], inputs[1])
    assert cap.prefix == [0, 0, 1]


def test_gate_override_gives_pure_content_or_pure_position_and_restores_exactly() -> None:
    model = tiny_convit()
    x = torch.rand(1, 3, 16, 16)
    before = fingerprint(model)
    cap = extract_attention(model, x)
    content, pos, _, _ = gpsa_components(model.blocks[0].attn, cap.inputs[0])
    with patched_gates(model, {0: None}, 0.0):
        assert torch.allclose(extract_attention(model, x).attn[0], content, atol=1e-6)
    with patched_gates(model, {0: [2]}, 1.0):
        a = extract_attention(model, x).attn[0]
        assert torch.allclose(a[:, 2], pos[:, 2], atol=1e-6)
        assert torch.allclose(a[:, 0], cap.attn[0][:, 0], atol=1e-6)  # other heads untouched
    with pytest.raises(RuntimeError), patched_gates(model, {1: None}, 0.5):
        raise RuntimeError("cancelled half-way")
    assert fingerprint_diff(before, fingerprint(model)) == []


def test_mean_attention_distance_on_hand_made_matrices() -> None:
    # 2×2 patch grid, 4-pixel patches: tokens 0 1 / 2 3; 0↔3 are diagonal (4√2 px), 0↔1 horizontal (4 px).
    a = torch.zeros(1, 1, 4, 4)
    for i, j in [(0, 3), (1, 2), (2, 1), (3, 0)]:
        a[0, 0, i, i] = 0.5
        a[0, 0, i, j] = 0.5
    mad = mean_attention_distance(a, (2, 2), (4, 4))
    assert mad.shape == (1, 1)
    assert mad.item() == pytest.approx(0.5 * 4 * math.sqrt(2), abs=1e-5)

    # With a CLS token taking 0.2 of every row: rows sum to 0.8 after dropping it, unless renormalised.
    b = torch.zeros(1, 1, 5, 5)
    b[..., :, 0] = 0.2
    for i, j in [(0, 1), (1, 0), (2, 3), (3, 2)]:
        b[0, 0, 1 + i, 1 + i] = 0.4
        b[0, 0, 1 + i, 1 + j] = 0.4
    b[0, 0, 0, 1:] = 0.2  # CLS row is dropped anyway
    assert mean_attention_distance(b, (2, 2), (4, 4), 1).item() == pytest.approx(0.4 * 4, abs=1e-5)
    renormed = mean_attention_distance(b, (2, 2), (4, 4), 1, renormalise=True)
    assert renormed.item() == pytest.approx(0.5 * 4, abs=1e-5)


def test_nonlocality_matches_timm_get_attention_map_on_the_real_input() -> None:
    model = tiny_convit()
    cap = extract_attention(model, torch.rand(3, 3, 16, 16))
    for i in range(2):
        with torch.no_grad():
            timm_dist = model.blocks[i].attn.get_attention_map(cap.inputs[i])  # (H,) in patches
        ours = mean_attention_distance(cap.attn[i], (4, 4), (1, 1)).mean(0)
        assert torch.allclose(ours, timm_dist, atol=1e-5)


def test_rollout_equals_the_explicit_product() -> None:
    torch.manual_seed(1)
    layers = [torch.rand(1, 2, 5, 5).softmax(-1) for _ in range(3)]
    eye = torch.eye(5)
    expected = eye
    for a in layers:
        expected = (0.5 * a.mean(1)[0] + 0.5 * eye) @ expected
    assert torch.allclose(attention_rollout(layers)[0], expected, atol=1e-6)
    assert torch.allclose(attention_rollout(layers, discard_ratio=0.5)[0].sum(-1), torch.ones(5), atol=1e-6)


def test_centres_read_back_from_local_init() -> None:
    torch.manual_seed(0)
    model = ConVit(img_size=16, patch_size=4, embed_dim=4, num_heads=9, depth=1, local_up_to_layer=1)
    c = gpsa_centres(model.blocks[0].attn)
    got = sorted(zip(c["dx"].round(4).tolist(), c["dy"].round(4).tolist(), strict=True))
    assert got == sorted((float(x), float(y)) for x in (-1, 0, 1) for y in (-1, 0, 1))
    assert c["alpha"].tolist() == [1.0] * 9
    assert gates(model).shape == (1, 9)


def test_fused_vit_is_read_with_fused_attention_off_only_inside() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=3)
    vit.eval()
    for blk in vit.blocks:
        blk.attn.fused_attn = True
    before = fingerprint(vit)
    cap = extract_attention(vit, torch.rand(1, 3, 16, 16))
    assert [a.shape for a in cap.attn] == [(1, 2, 17, 17)] * 2 and cap.prefix == [1, 1]
    assert all(blk.attn.fused_attn for blk in vit.blocks)
    assert fingerprint_diff(before, fingerprint(vit)) == []
    with pytest.raises(ValueError), no_fused_attn(vit), capture({"0": vit.blocks[0].attn.attn_drop}):
        raise ValueError("boom")
    assert fingerprint_diff(before, fingerprint(vit)) == []


def test_uniform_attention_reference_by_hand() -> None:
    from backend.labs.attention_maps import uniform_reference

    # 1×3 grid, 1-px patches: distances [[0,1,2],[1,0,1],[2,1,0]] -> mean 8/9.
    assert uniform_reference((1, 3), (1, 1)) == pytest.approx(8 / 9)
    # 2×2 grid: each patch sees 0, 1, 1, √2 -> (2 + √2)/4; 4-px patches scale it by 4.
    assert uniform_reference((2, 2), (1, 1)) == pytest.approx((2 + 2**0.5) / 4)
    assert uniform_reference((2, 2), (4, 4)) == pytest.approx(2 + 2**0.5)
    # With a class token the uniform row puts 1/5 on it; dropped without renormalising: × 4/5.
    assert uniform_reference((2, 2), (1, 1), n_prefix=1) == pytest.approx((2 + 2**0.5) / 5)
    # and it is what mean_attention_distance gives a uniform matrix with a CLS row/column
    a = torch.full((1, 1, 5, 5), 1 / 5)
    mad = mean_attention_distance(a, (2, 2), (1, 1), n_prefix=1)
    assert float(mad) == pytest.approx((2 + 2**0.5) / 5)
    # The numbers for the 8×8 grid of 4-px patches: 16.55 px, and 16.29 px with the class token.
    assert uniform_reference((8, 8), (4, 4)) == pytest.approx(16.55, abs=0.005)
    assert uniform_reference((8, 8), (4, 4), 1) == pytest.approx(16.29, abs=0.005)


def test_attention_entropy_of_uniform_and_one_hot_rows() -> None:
    from backend.labs.attention_maps import attention_entropy

    uniform = torch.full((2, 3, 7, 7), 1 / 7)
    assert torch.allclose(attention_entropy(uniform), torch.full((2, 3), math.log(7)))
    one_hot = torch.eye(7).expand(1, 2, 7, 7)
    assert torch.equal(attention_entropy(one_hot), torch.zeros(1, 2))
    half = torch.tensor([0.5, 0.5, 0.0]).expand(1, 1, 3, 3)
    assert float(attention_entropy(half)) == pytest.approx(math.log(2))
