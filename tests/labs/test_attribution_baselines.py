"""Integrated Gradients' baseline: its own prediction is reported, and it is what the model says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from backend.data.shapes import load_shapes
from backend.jobs.execute import load_model
from backend.labs.attribution import relative_l2
from backend.labs.base import LabContext, get_lab
from backend.models.registry import get_entry


def shipped(name: str) -> bool:
    path = get_entry(name).weights_path
    return path is not None and path.exists()


@pytest.mark.skipif(not shipped("cnn-shapes"), reason="cnn-shapes weights not trained")
def test_baseline_class_probability_is_reported_and_correct() -> None:
    lab = get_lab("attribution")
    m = load_model("cnn-shapes", "cpu")
    img = load_shapes("test", seed=1, n=1).images[0]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255  # the zoo's transform: [0, 1] pixels
    with torch.no_grad():
        cls = int(m.module(x).argmax())
        # Independent baselines: the Distill blur (σ = 32/8 = 4, kernel 2·⌈3σ⌉ + 1 = 25) and one
        # training image per class (the training split deals labels out evenly).
        blur = gaussian_blur(x, [25, 25], [4.0, 4.0])
        p_blur = torch.softmax(m.module(blur), -1)[0, cls].item()
        refs = load_shapes("train", seed=0, n=8)
        assert sorted(refs.labels.tolist()) == list(range(8))
        r = torch.from_numpy(refs.images).permute(0, 3, 1, 2).float() / 255
        p_refs = torch.softmax(m.module(r), -1)[:, cls].mean().item()
    params = lab.Params(randomisation="none", ig_steps=8, ig_baseline="blurred")
    res = lab.run(LabContext(models=[m], image=Image.fromarray(img)), params)
    mm = res.metrics["cnn-shapes"]
    assert mm["baseline_p_class"] == pytest.approx(p_blur, abs=1e-5)
    assert mm["p_class_by_baseline"]["expected"] == pytest.approx(p_refs, abs=1e-4)
    assert mm["p_class_by_baseline"]["blurred"] == pytest.approx(p_blur, abs=1e-4)
    # the warning appears exactly when the baseline already holds the class
    assert mm["baseline_holds_class"] == (p_blur >= 0.5)
    assert ("already gives" in (res.text or "")) == mm["baseline_holds_class"]
    # completeness: IG sums to F(x) − F(x′) up to the reported delta, with F(x′) the reported logit
    with torch.no_grad():
        gap = (m.module(x)[0, cls] - m.module(blur)[0, cls]).item()
    assert mm["logit_x_minus_logit_baseline"] == pytest.approx(gap, abs=1e-4)
    ig = res.arrays["per_model"]["cnn-shapes"]["ig"]
    assert abs(float(ig.sum()) - gap) == pytest.approx(mm["ig_convergence_delta"], abs=1e-3)


def test_relative_l2_by_hand() -> None:
    assert math.isnan(relative_l2(np.array([3.0, 4.0]), np.array([0.0, 0.0])))
    assert relative_l2(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    assert relative_l2(np.array([0.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(1.0)
    assert relative_l2(np.array([3.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(4 / 5)
