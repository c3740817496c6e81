"""The closed-form denoisers against independent calculations: a least-squares fit, brute-force nearest
neighbours, and the locality denoiser reducing to the global one when its mask keeps every pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.data import load_dataset
from backend.data.denoise_sets import DENOISE_DATASETS, gray_tensor
from backend.models import create_model, get_entry
from backend.models.denoisers import EmpiricalOptimalDenoiser, LocalityDenoiser, WienerDenoiser


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    return gray_tensor(load_dataset("patches16", "train", n=600, seed=0).images)


@pytest.mark.parametrize("name", DENOISE_DATASETS)
def test_datasets_are_16x16_grey_in_range(name: str) -> None:
    x = gray_tensor(load_dataset(name, "test", n=8, seed=0).images)
    assert x.shape == (8, 1, 16, 16) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x.std()) > 0.05  # not blank


def test_wiener_equals_a_least_squares_linear_fit(patches: torch.Tensor) -> None:
    sigma = 0.2
    model = WienerDenoiser()
    model.fit(patches)
    # Independent: the affine map (A, b) minimising E‖x − A y − b‖² over the same images, y = x + σz.
    # Averaging over the Gaussian noise exactly turns the noise into a ridge term: rows √n·σ·[I 0] with
    # target 0 below the data rows [x 1] -> x. Solved by lstsq, with no eigendecomposition.
    x = patches.reshape(len(patches), -1).double()
    n, d = x.shape
    design = torch.cat(
        [
            torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1),
            torch.cat(
                [n**0.5 * sigma * torch.eye(d, dtype=torch.float64), torch.zeros(d, 1, dtype=torch.float64)],
                1,
            ),
        ]
    )
    target = torch.cat([x, torch.zeros(d, d, dtype=torch.float64)])
    coef = torch.linalg.lstsq(design, target).solution  # (257, 256): Aᵀ then b
    gen = torch.Generator().manual_seed(0)
    y = patches[:50] + sigma * torch.randn(patches[:50].shape, generator=gen)
    lsq = torch.cat([y.reshape(50, -1).double(), torch.ones(50, 1, dtype=torch.float64)], 1) @ coef
    with torch.no_grad():
        wiener = model(y, sigma).reshape(50, -1).double()
    # Within 0.005 (METHODS); the only difference is the covariance's n − 1 against the fit's n.
    err = float((wiener - lsq).abs().max())
    assert err < 0.005, err
    # The check has teeth: a wrong noise level in the Wiener filter is far outside it.
    with torch.no_grad():
        assert float((model(y, 2 * sigma).reshape(50, -1).double() - lsq).abs().max()) > 0.05


def test_empirical_optimum_at_low_noise_returns_the_nearest_training_image(patches: torch.Tensor) -> None:
    model = EmpiricalOptimalDenoiser()
    model.fit(patches)
    test = gray_tensor(load_dataset("patches16", "test", n=10, seed=0).images)
    y = test + 0.01 * torch.randn(test.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(y, 0.01).reshape(10, -1)
    flat = patches.reshape(len(patches), -1).numpy()
    nearest = np.argmin(((y.reshape(10, -1).numpy()[:, None] - flat[None]) ** 2).sum(-1), 1)  # brute force
    np.testing.assert_allclose(out.numpy(), flat[nearest], atol=1e-4)
    # ...one image holds all the posterior weight there; at high noise it spreads over many.
    assert float(model.weights(y, 0.01).max(1).values.min()) > 0.99
    assert float(model.weights(y, 1.0).max(1).values.max()) < 0.5


def test_locality_denoiser_with_every_pixel_in_its_mask_is_the_global_optimum(patches: torch.Tensor) -> None:
    opt, loc = EmpiricalOptimalDenoiser(), LocalityDenoiser()
    opt.fit(patches[:200])
    loc.fit(patches[:200])
    y = patches[200:204] + 0.3 * torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    loc.tau = 0.0  # every |M| ≥ 0: the softmax sees all pixels for every output pixel
    with torch.no_grad():
        torch.testing.assert_close(loc(y, 0.3), opt(y, 0.3), atol=1e-5, rtol=1e-5)
        loc.tau = 0.02
        local = loc(y, 0.3)
    assert not torch.allclose(local, opt(y, 0.3), atol=1e-3)  # the mask changes the estimate
    mask = loc.mask(torch.tensor([[0.3]]))[0]
    assert 1 < int(mask[:, 8 * 16 + 8].sum()) < 256  # a neighbourhood, neither one pixel nor all


def test_registered_denoisers_compute_from_their_dataset() -> None:
    steps: list[float] = []
    model = create_model("wiener-faces", progress=lambda f, m="": steps.append(f))
    assert steps[-1] == 1.0 and get_entry("wiener-faces").task == "denoise"
    x = gray_tensor(load_dataset("faces16", "train", seed=0).images).reshape(-1, 256)
    torch.testing.assert_close(model.mean, x.mean(0))  # type: ignore[arg-type]


def test_locality_single_pixel_path_matches_the_full_forward(patches: torch.Tensor) -> None:
    loc = LocalityDenoiser()
    loc.fit(patches[:100])
    y = patches[100:103] + 0.2 * torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(loc.forward_pixel(y, 0.2, 37), loc(y, 0.2).reshape(3, -1)[:, 37])
