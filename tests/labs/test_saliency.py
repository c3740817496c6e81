"""GradCAM and Integrated Gradients checked against closed forms (METHODS.md §3)."""

from __future__ import annotations

import pytest
import torch
from timm.models.convit import ConVit
from torch import nn

from backend.labs.hooks import fingerprint, fingerprint_diff
from backend.labs.saliency import CamTarget, TokenGrid, gradcam, integrated_gradients, randomised_copy


class TinyCam(nn.Module):
    """conv (2 maps) -> global average pool -> linear: y_c = Σ_k w_ck · mean(A^k) + b_c."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_gradcam_matches_the_closed_form_of_a_pooled_linear_head() -> None:
    torch.manual_seed(0)
    model = TinyCam().eval()
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.25], [-1.0, 3.0]]))
    x = torch.rand(1, 1, 6, 6)
    before = fingerprint(model)
    for c in range(3):
        cam = gradcam(model, CamTarget("features", False, 0), x, c, upsample=False)
        # α_k = ∂y_c/∂A^k_ij averaged = w_ck / (h·w); L = ReLU(Σ_k α_k A^k).
        with torch.no_grad():
            a = model.features(x)[0]  # (2, 6, 6)
        expected = torch.relu((model.fc.weight[c].view(2, 1, 1) * a).sum(0) / 36.0)
        assert cam.shape == (1, 1, 6, 6)
        assert torch.allclose(cam[0, 0], expected.detach(), atol=1e-6)
    up = gradcam(model, CamTarget("features", False, 0), torch.rand(1, 1, 6, 6), 0)
    assert up.shape == (1, 1, 6, 6)
    assert fingerprint_diff(before, fingerprint(model)) == []


def test_integrated_gradients_completeness_within_reported_delta() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    x, base = torch.rand(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    attr, delta = integrated_gradients(model, x, base, cls=1, n_steps=32)
    with torch.no_grad():
        gap = float(model(x)[0, 1] - model(base)[0, 1])
    assert abs(float(attr.sum()) - gap) <= delta + 1e-6
    assert delta < 1e-3 * max(abs(gap), 1e-3)
    # Linear model: IG is exactly (x - x') * w, whatever the number of steps.
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    attr, delta = integrated_gradients(lin, x, base, cls=0, n_steps=4)
    assert torch.allclose(attr.flatten(), (x.flatten() * lin[1].weight[0]).detach(), atol=1e-6)
    assert delta < 1e-5


def tiny_deit() -> ConVit:
    torch.manual_seed(0)
    model = ConVit(
        img_size=16, patch_size=4, embed_dim=8, num_heads=2, depth=2, local_up_to_layer=0, num_classes=3
    )
    with torch.no_grad():
        model.head.weight.normal_()  # larger logits than the 0.02-std init
    return model.eval()


def test_token_grid_wrapper_is_temporary_and_targets_the_right_tokens() -> None:
    model = tiny_deit()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        logits = model(x)
    before = fingerprint(model)
    original = model.blocks[-1].norm1
    cam = gradcam(model, CamTarget("blocks.-1.norm1", True, 1), x, 0, upsample=False)
    assert cam.shape == (1, 1, 4, 4) and float(cam.abs().max()) > 0
    assert model.blocks[-1].norm1 is original and not isinstance(model.blocks[-1].norm1, TokenGrid)
    assert fingerprint_diff(before, fingerprint(model)) == []
    with torch.no_grad():
        assert torch.equal(model(x), logits)
    # METHODS §3 pitfall: the last block's output patch tokens get exactly zero gradient (CLS pooling).
    dead = gradcam(model, CamTarget("blocks.-1", True, 1), x, 0, upsample=False)
    assert float(dead.abs().max()) == 0.0


def test_inference_mode_first_pass_does_not_break_gradcam_on_convit() -> None:
    torch.manual_seed(0)
    model = ConVit(img_size=16, patch_size=4, embed_dim=8, num_heads=4, depth=2, local_up_to_layer=1).eval()
    with torch.inference_mode():
        model(torch.rand(1, 3, 16, 16))  # the DESIGN pitfall: caches rel_indices as an inference tensor
    cam = gradcam(model, CamTarget("blocks.0", True, 0), torch.rand(1, 3, 16, 16), 0, upsample=False)
    assert cam.shape == (1, 1, 4, 4)


def test_randomised_copy_changes_every_weight_but_not_the_original() -> None:
    model = tiny_deit()
    before = fingerprint(model)
    rand = randomised_copy(model, seed=3)
    for (name, p), q in zip(model.named_parameters(), rand.parameters(), strict=True):
        if p.numel() > 1 and p.std() > 0:
            assert not torch.equal(p, q), name
    assert fingerprint_diff(before, fingerprint(model)) == []


@pytest.mark.parametrize("steps", [8, 32])
def test_ig_delta_is_what_captum_reports(steps: int) -> None:
    torch.manual_seed(steps)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    x, base = torch.rand(1, 3, 2, 2), torch.rand(1, 3, 2, 2)
    attr, delta = integrated_gradients(model, x, base, cls=0, n_steps=steps)
    with torch.no_grad():
        gap = float(model(x)[0, 0] - model(base)[0, 0])
    assert abs(abs(float(attr.sum()) - gap) - delta) < 1e-5
