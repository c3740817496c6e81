"""The bias-free UNet denoisers: f(y) = J(y)·y, autograd Jacobians against finite differences, and the
shipped weights against their cards."""

from __future__ import annotations

import pytest
import torch

from backend.labs import denoising as dn
from backend.models import create_model, get_entry, list_models
from backend.models.unet import BiasFreeUNet
from backend.train.commands import verify_model

UNETS = [e.name for e in list_models() if e.family == "unet" and e.source == "zoo"]


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def test_jacobian_by_autograd_matches_finite_differences() -> None:
    torch.manual_seed(0)
    model = BiasFreeUNet(width=4).double().eval()  # small and in float64: differences are exact enough
    y = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    jac = dn.jacobian(model, y, 0.1)
    eps = 1e-6
    for j in (0, 37, 136, 255):  # a few input pixels: columns of J by central differences
        e = torch.zeros(256, dtype=torch.float64)
        e[j] = eps
        with torch.no_grad():
            plus = model((y.reshape(-1) + e).reshape(y.shape)).reshape(-1)
            minus = model((y.reshape(-1) - e).reshape(y.shape)).reshape(-1)
        torch.testing.assert_close(jac[:, j], (plus - minus) / (2 * eps), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["unet-patches", "unet-faces"])
def test_bias_free_unet_is_its_jacobian_times_its_input(name: str) -> None:
    model = create_model(name)
    assert all(not n.endswith("bias") for n, _ in model.named_parameters())
    y = dn.noisy(torch.full((1, 1, 16, 16), 0.5), 0.3, seed=1)
    jac = dn.jacobian(model, y, 0.3)
    with torch.no_grad():
        out = model(y).reshape(-1)
        torch.testing.assert_close(jac @ y.reshape(-1), out, atol=1e-4, rtol=1e-4)
        # Positive homogeneity, the same property seen from outside: f(2y) = 2 f(y).
        torch.testing.assert_close(model(2 * y).reshape(-1), 2 * out, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["unet-patches", "unet-digits"])
def test_shipped_unet_matches_its_card_and_beats_the_noise(name: str) -> None:
    ok, msg = verify_model(name)
    assert ok, msg
    # The card's own numbers: at σ = 0.4 denoising must beat the noisy input by a wide margin.
    psnr = get_entry(name).card()["test_psnr"]  # type: ignore[index]
    assert psnr["0.4"]["psnr"] > psnr["0.4"]["noisy_psnr"] + 5
