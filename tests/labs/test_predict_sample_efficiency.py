"""Predict and sample efficiency: one grouped 0–1 probability chart in one class order, the exact model
input beside the original, and the sweep chart with its fraction ticks and chance line."""

from __future__ import annotations

import numpy as np
import torch

from backend.data.examples import load_example
from backend.data.shapes import SHAPE_CLASSES
from backend.jobs.execute import run_lab
from backend.labs.predict import class_order
from backend.labs.sample_efficiency import summary_text
from backend.models.registry import create_model
from tests.test_plots import decode

MODELS = ["cnn-shapes", "deit-shapes"]


def test_one_grouped_chart_on_a_fixed_axis_with_the_models_own_probabilities() -> None:
    image = load_example("shapes-star")
    out = run_lab("predict", MODELS, image, {"top_k": 3}, device="cpu")
    seen, bars = out["figures"][0], out["figures"][1]
    assert len(out["figures"]) == 2
    traces = [t for t in bars["data"] if t["type"] == "bar"]
    assert [t["name"] for t in traces] == MODELS
    assert bars["layout"]["xaxis"]["range"] == [0, 1]
    classes = list(traces[0]["y"])
    assert all(list(t["y"]) == classes for t in traces)
    for trace, name in zip(traces, MODELS, strict=True):
        model = create_model(name, device="cpu")
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():  # the zoo's data config is mean 0, std 1 at 32×32: input = pixels / 255
            probs = torch.softmax(model(x), -1)[0].numpy()
        names = list(SHAPE_CLASSES)
        expected = [probs[names.index(c)] for c in classes]
        np.testing.assert_allclose(decode(trace["x"]), expected, rtol=1e-4, atol=1e-6)
    # the 32×32 shape example is its own model input, pixel for pixel
    images = [t for t in seen["data"] if t["type"] == "image"]
    model_input = decode(images[1]["z"])
    np.testing.assert_array_equal(model_input, np.asarray(image))
    assert "star says" not in out["text"] and "cnn-shapes says" in out["text"]


def test_a_photo_is_shown_beside_its_32px_model_input() -> None:
    out = run_lab(
        "predict", ["cnn-shapes"], load_example("chelsea"), {"top_k": 2, "tta_samples": 8}, device="cpu"
    )
    images = [t for t in out["figures"][0]["data"] if t["type"] == "image"]
    assert images[0]["source"].startswith("data:image/png")  # the photo, as uploaded
    assert decode(images[1]["z"]).shape == (32, 32, 3)
    assert len(out["figures"]) == 3  # + the chart averaged over shifted copies, same class order
    assert list(out["figures"][2]["data"][0]["y"]) == list(out["figures"][1]["data"][0]["y"])
    assert all("notice" in f["layout"]["meta"] for f in out["figures"])


def test_class_order_is_the_training_order_of_the_union_of_top_k() -> None:
    per_model = {
        "a": {"class_names": ["circle", "ring", "star", "cross"], "top": ["star", "circle"]},
        "b": {"class_names": ["circle", "ring", "star", "cross"], "top": ["cross", "star"]},
        "c": {"class_names": ["circle", "ring", "star", "cross", "cat"], "top": ["cat"]},
    }
    assert class_order(per_model) == ["circle", "star", "cross", "cat"]


def test_sample_efficiency_chart_ticks_and_sentences() -> None:
    out = run_lab("sample-efficiency", [], None, {}, device="cpu")
    fig = out["figures"][0]
    axis = fig["layout"]["xaxis"]
    assert axis["type"] == "log" and list(axis["ticktext"]) == ["5 %", "10 %", "25 %", "50 %", "100 %"]
    assert any("chance" in (a.get("text") or "") for a in fig["layout"]["annotations"])
    assert out["text"].startswith("Each model was trained on")
    summary = {
        "cnn": {"mean": [0.75, 0.99], "std": [0.02, 0.0]},
        "vit": {"mean": [0.45, 0.91], "std": [0.08, 0.03]},
    }
    text = summary_text("digits", 1000, 3, [0.05, 1.0], summary)
    assert "With 5% of the data, cnn is best at 75% (± 2%), then vit 45%." in text
