"""The diffusion labs: locality summaries against hand-made fields and the Wiener closed form, the
basis lab's bias-free identity, and the sampler's partial results, cancellation and memorisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from backend.data import load_dataset
from backend.data.denoise_sets import gray_tensor
from backend.jobs.execute import JobCancelled, run_lab
from backend.labs import LabContext, LabResult, LoadedModel, get_lab
from backend.labs import denoising as dn
from backend.models import create_model, get_entry


def test_mass_radius_on_hand_made_fields() -> None:
    delta = np.zeros((16, 16))
    delta[8, 8] = 1.0
    assert dn.mass_radius(delta, (8, 8)) == 0.0
    ring = delta.copy()
    ring[8, 9] = ring[8, 7] = ring[7, 8] = ring[9, 8] = 1.0  # 4/5 of the mass at distance 1
    assert dn.mass_radius(ring, (8, 8), 0.5) == 1.0
    assert dn.mass_radius(ring, (8, 8), 0.2) == 0.0
    # A uniform field: the 90 % radius is the distance that encloses 90 % of the pixels.
    d = np.sort(np.hypot(*np.mgrid[0:16, 0:16] - 8).ravel())
    assert dn.uniform_radius((8, 8)) == d[int(np.ceil(0.9 * 256)) - 1]


def test_r2_and_centred_cosine_by_hand() -> None:
    t = np.array([1.0, 2.0, 3.0, 4.0])
    assert dn.r2_score(t, t) == 1.0
    assert dn.r2_score(np.full(4, 2.5), t) == pytest.approx(0.0)
    assert dn.r2_score(t + 1, t) == pytest.approx(1 - 4 / 5)
    a = np.array([[0.0, 1.0, 0.0, 1.0]])
    assert dn.centred_cosine(a, a + 3)[0] == pytest.approx(1.0)  # an offset is not a difference
    assert dn.centred_cosine(a, 1 - a)[0] == pytest.approx(-1.0)


def _locality(params: dict[str, Any]) -> dict[str, Any]:
    lab = get_lab("diffusion-locality")
    p = lab.Params(**params)
    ctx = LabContext(
        models=[], image=None, load_model=lambda n: LoadedModel(n, get_entry(n), create_model(n))
    )
    result = lab.run(ctx, p)
    return {"result": result, "figures": lab.figures(result, p)}


def test_locality_lab_wiener_field_is_the_closed_form_row() -> None:
    out = _locality({"dataset": "faces", "n_images": 1, "row": 5, "col": 9})
    result: LabResult = out["result"]
    wiener = create_model("wiener-faces")
    gain = wiener.gain(torch.tensor([[0.2]]))[0]  # type: ignore[operator]
    expected = gain[5 * 16 + 9].abs().reshape(16, 16).numpy()  # row p of U diag(λ/(λ+σ²)) Uᵀ
    np.testing.assert_allclose(result.arrays["fields"]["wiener"]["0.2"], expected, atol=1e-5)
    m = result.metrics
    assert set(m["radius90"]) == set(dn.KINDS) and len(m["radius90"]["unet"]) == len(dn.SIGMAS)
    r2 = m["unet_vs"]["wiener"]["r2"]
    assert all(-10 < v <= 1 for v in r2)
    assert len(out["figures"]) == 3 and "σ = 0.2" in out["figures"][0]["layout"]["title"]["text"]


def test_basis_lab_on_a_test_image_satisfies_f_equals_jy() -> None:
    result = run_lab("denoiser-basis", ["unet-digits"], None, {"source": "test image", "sigma": 0.4})
    m = result["metrics"]["unet-digits"]
    assert max(m["f_equals_Jy_relative_error"]) < 1e-4
    assert m["image"].startswith("digits16 test image 0")
    # trace(J) is the sum of the eigenvalues the lab shows; both are bounded by the 256 dimensions.
    assert all(0 < t < 256 for t in m["trace_J"])
    assert len(result["figures"]) == 4


class _Cancel(Exception):
    pass


def test_sampler_publishes_every_step_and_stops_at_the_next_step_when_cancelled() -> None:
    lab = get_lab("diffusion-sampling")
    p = lab.Params(dataset="digits", denoiser="optimal", steps=6, n_samples=2)
    published: list[LabResult] = []
    calls = 0

    def progress(fraction: float, message: str = "") -> None:
        nonlocal calls
        calls += 1
        if calls > 3:  # as the worker's progress does once a cancel request is seen
            raise JobCancelled("cancelled on request")

    ctx = LabContext(
        models=[],
        image=None,
        progress=progress,
        publish=published.append,
        load_model=lambda n: LoadedModel(n, get_entry(n), create_model(n)),
    )
    with pytest.raises(JobCancelled):
        lab.run(ctx, p)
    assert len(published) == 3  # steps 1-3 went out; step 4 was stopped before publishing
    assert published[-1].metrics["steps_done"] == {"optimal": 3}


def test_empirical_optimal_samples_are_training_images() -> None:
    result = run_lab(
        "diffusion-sampling",
        [],
        None,
        {"dataset": "digits", "denoiser": "optimal", "steps": 10, "n_samples": 2},
    )
    m = result["metrics"]["optimal"]
    assert min(m["nearest_similarity"]) > 0.99
    train = gray_tensor(load_dataset("digits16", "train", n=2000, seed=0).images)
    assert max(m["nearest_index"]) < len(train)
