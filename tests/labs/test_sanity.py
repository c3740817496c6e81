"""Model-randomisation sanity checks (backend/labs/sanity.py), against hand-made cases and closed forms."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from torch import nn

from backend.labs.saliency import randomised_copy
from backend.labs.sanity import (
    SanityResult,
    cascade_models,
    cascade_order,
    nan_to_none,
    rank_statistic,
    rebuild_random,
    summarise,
)
from backend.models.registry import ModelEntry, get_entry


def test_a_constant_map_gives_a_missing_value_not_zero() -> None:
    varying = np.arange(16.0).reshape(4, 4)
    for kind in ("kendall", "spearman"):
        assert math.isnan(rank_statistic(np.zeros((4, 4)), varying, kind))
        assert math.isnan(rank_statistic(varying, np.full((4, 4), 3.0), kind))
    s = summarise(np.array([0.5, math.nan, 0.1]))
    assert s["n"] == 3 and s["n_undefined"] == 1 and s["mean"] == pytest.approx(0.3)
    assert nan_to_none([[0.5, math.nan]]) == [[0.5, None]]
    res = SanityResult("kendall", [0], full={"GradCAM": np.array([[math.nan, math.nan]])})
    res.zeros["GradCAM"] = {"trained": np.zeros(2), "randomised": np.ones((1, 2))}
    out = json.loads(json.dumps(res.metrics(), allow_nan=False))
    assert out["GradCAM_all_layers"] == {"mean": None, "std": None, "n": 2, "n_undefined": 2}
    assert out["GradCAM_zero_fraction"]["randomised"] == 1.0


def test_kendall_is_tau_b_on_tied_maps() -> None:
    # Hand case with ties: a = (0,0,1,2), b = (0,1,1,2). Concordant pairs 4, discordant 0; ties in a only: 1,
    # in b only: 1. τ-b = (C − D) / sqrt((C + D + T_a)(C + D + T_b)) = 4 / sqrt(5 · 5) = 0.8.
    a, b = np.array([0.0, 0.0, 1.0, 2.0]), np.array([0.0, 1.0, 1.0, 2.0])
    assert rank_statistic(a, b) == pytest.approx(0.8)
    assert rank_statistic(a, b) == pytest.approx(kendalltau(a, b, variant="b").statistic)


class OutOfOrder(nn.Module):
    """Registers its head first but runs it last: the cascade must follow the forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Linear(4, 4))
        self.embed = nn.Linear(3, 3)
        self.token = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.embed(x) + self.token))


def test_the_cascade_randomises_units_in_order_from_the_output_down() -> None:
    torch.manual_seed(0)
    trained, random = OutOfOrder(), OutOfOrder()
    groups = cascade_order(trained, torch.rand(2, 3))
    # body has 3 parameterised children, so it is split; the root parameter sits just above the embedding
    assert [g[0] for g in groups] == ["head", "body.3", "body.2", "body.0", "token", "embed"]
    t_state, r_state = trained.state_dict(), random.state_dict()
    cascade = cascade_models(trained, random, groups)
    steps = [{k: v.clone() for k, v in m.state_dict().items()} for m in cascade]
    assert len(steps) == len(groups)
    for k, mixed in enumerate(steps, start=1):
        for i, (_, keys) in enumerate(groups):
            source = r_state if i < k else t_state
            for key in keys:
                assert torch.equal(mixed[key], source[key]), (k, key)
    assert trained.state_dict().keys() == t_state.keys()  # the trained model itself is untouched
    for key, v in trained.state_dict().items():
        assert torch.equal(v, t_state[key])


def test_the_cascade_of_the_zoo_cnn_and_vit_follows_their_layers() -> None:
    cnn = get_entry("cnn-shapes").builder().eval()
    assert [g[0] for g in cascade_order(cnn, torch.rand(1, 3, 32, 32))] == [
        "head",
        "layer3",
        "layer2",
        "layer1",
        "stem",
    ]
    vit = get_entry("deit-shapes").builder().eval()
    labels = [g[0] for g in cascade_order(vit, torch.rand(1, 3, 32, 32))]
    blocks = [f"blocks.{i}" for i in range(5, -1, -1)]
    assert labels == ["head", "norm", *blocks, "cls_token, pos_embed", "patch_embed"]
    # the last cascade step is the fully randomised model: every state key is covered once
    keys = [k for _, ks in cascade_order(vit, torch.rand(1, 3, 32, 32)) for k in ks]
    assert sorted(keys) == sorted(vit.state_dict())


def local_init_closed_form(num_heads: int, strength: float = 1.0) -> torch.Tensor:
    """METHODS §1: pos_proj.weight[p] = α·[2(h2 − c), 2(h1 − c), −1], p = h1 + ks·h2."""
    ks = int(math.isqrt(num_heads))
    c = (ks - 1) / 2 if ks % 2 == 0 else ks // 2
    w = torch.zeros(num_heads, 3)
    for h1 in range(ks):
        for h2 in range(ks):
            w[h1 + ks * h2] = strength * torch.tensor([2 * (h2 - c), 2 * (h1 - c), -1.0])
    return w


def test_the_rebuilt_random_convit_keeps_its_local_init() -> None:
    entry: ModelEntry = get_entry("convit-shapes")
    trained = entry.builder().eval()
    with torch.no_grad():  # stand-in for training: move every weight away from its init
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    expected = local_init_closed_form(4)  # H = 4 heads: centres (±0.5, ±0.5)
    assert expected.tolist() == [[-1, -1, -1], [-1, 1, -1], [1, -1, -1], [1, 1, -1]]
    for seed in (0, 1):
        rand = rebuild_random(entry, trained, seed)
        gpsa = [b.attn for b in rand.blocks if hasattr(b.attn, "pos_proj")]
        assert len(gpsa) == 4
        for a in gpsa:
            assert torch.allclose(a.pos_proj.weight, expected)
            assert torch.equal(a.v.weight, torch.eye(a.v.weight.shape[0]))
            assert torch.allclose(torch.sigmoid(a.gating_param), torch.full((4,), 1 / (1 + math.e**-1)))
    # different seeds give different random weights elsewhere
    a, b = rebuild_random(entry, trained, 0), rebuild_random(entry, trained, 1)
    assert not torch.equal(a.blocks[4].attn.qkv.weight, b.blocks[4].attn.qkv.weight)
    # The old re-initialisation (PyTorch defaults on a deep copy) wiped the local init out.
    old = randomised_copy(trained, seed=0)
    assert not torch.allclose(old.blocks[0].attn.pos_proj.weight, expected)


def test_rebuild_does_not_touch_the_global_rng_and_a_fresh_mixer_has_a_random_head() -> None:
    entry = get_entry("mixer-shapes")
    model = entry.builder().eval()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    rand = rebuild_random(entry, model, seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    # timm zero-initialises the Mixer's classifier; the sanity model must not (all gradients would be 0)
    assert float(rand.head.weight.detach().abs().max()) > 0
    assert torch.equal(rand.head.bias, torch.zeros_like(rand.head.bias))
