"""The attention, gating and attribution labs end to end: figures come back, models are left untouched.

Random-initialised zoo architectures always run (fast, no weights needed); the shipped zoo runs through
the same job function the API and CLI use once its weights exist.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from PIL import Image

from backend.labs.base import LabContext, LoadedModel, get_lab
from backend.labs.hooks import fingerprint, fingerprint_diff
from backend.models.registry import get_entry

SMALL = {
    "attention": {"probe_size": 16, "layer": 4, "head": 1, "query_row": 2, "query_col": 5},
    "gating": {"probe_size": 16, "counterfactual": "head", "cf_layer": 1, "cf_head": 2, "cf_sigma": 1.0},
    "attribution": {"ig_steps": 8, "seeds": 2, "probe_size": 2, "references": 2},
}
MODELS = {
    "attention": ["convit-shapes", "deit-shapes"],
    "gating": ["convit-shapes"],
    "attribution": ["cnn-shapes", "deit-shapes", "convit-shapes", "mixer-shapes", "mlp-shapes"],
}


def random_model(name: str, seed: int = 0) -> LoadedModel:
    entry = get_entry(name)
    torch.manual_seed(seed)
    module = entry.builder().eval()
    module.pretrained_cfg = entry.pretrained_cfg()  # type: ignore[assignment]
    with torch.no_grad():
        module(torch.rand(1, *entry.input_size))  # ConViT fills its rel_indices cache on the first forward
    return LoadedModel(name, entry, module)


def sample_image() -> Image.Image:
    from backend.data.shapes import load_shapes

    return Image.fromarray(load_shapes("test", seed=1, n=1).images[0])


@pytest.mark.parametrize("lab_name", ["attention", "gating", "attribution"])
def test_lab_runs_and_leaves_models_untouched(lab_name: str) -> None:
    lab = get_lab(lab_name)
    models = [random_model(n) for n in MODELS[lab_name]]
    before = [fingerprint(m.module) for m in models]
    params = lab.Params.model_validate(SMALL[lab_name])
    fractions: list[float] = []
    ctx = LabContext(models=models, image=sample_image(), progress=lambda f, msg="": fractions.append(f))
    result = lab.run(ctx, params)
    figures = lab.figures(result, params)
    assert figures and all(f["data"] for f in figures)
    json.dumps(figures)
    json.dumps(result.metrics)
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions)
    for m, fp in zip(models, before, strict=True):
        assert fingerprint_diff(fp, fingerprint(m.module)) == [], m.name


def test_attention_lab_reports_the_recombination_and_probe_distances() -> None:
    lab = get_lab("attention")
    models = [random_model("convit-shapes"), random_model("deit-shapes")]
    params = lab.Params.model_validate({"probe_size": 16, "layer": 0})
    result = lab.run(LabContext(models=models, image=sample_image()), params)
    conv = result.arrays["per_model"]["convit-shapes"]
    assert set(conv["maps"]) == {"total", "content", "positional"}
    assert result.metrics["convit-shapes"]["recombination_max_abs_error"] < 1e-6
    assert conv["mad_probe"].shape == (6, 4) and conv["rollout"].shape == (8, 8)
    deit = result.arrays["per_model"]["deit-shapes"]
    assert set(deit["maps"]) == {"total"} and deit["rollout_from"] == 0


class Cancelled(Exception):
    pass


@pytest.mark.parametrize("lab_name", ["attention", "gating", "attribution"])
def test_cancel_half_way_leaves_no_hook_or_patched_gate(lab_name: str) -> None:
    lab = get_lab(lab_name)
    models = [random_model(n) for n in MODELS[lab_name][:3]]
    before = [fingerprint(m.module) for m in models]
    calls = {"n": 0}

    def progress(fraction: float, message: str = "") -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise Cancelled(message)

    with pytest.raises(Cancelled):
        ctx = LabContext(models=models, image=sample_image(), progress=progress)
        lab.run(ctx, lab.Params(**SMALL[lab_name]))
    for m, fp in zip(models, before, strict=True):
        assert fingerprint_diff(fp, fingerprint(m.module)) == [], m.name


def zoo_ready(names: list[str]) -> bool:
    paths = [get_entry(n).weights_path for n in names]
    return all(p is not None and p.exists() for p in paths)


@pytest.mark.parametrize("lab_name", ["attention", "gating", "attribution"])
def test_lab_on_the_shipped_zoo(lab_name: str) -> None:
    from backend.jobs.execute import load_model, run_lab

    lab = get_lab(lab_name)
    names = list(lab.default_models)
    if not zoo_ready(names):
        pytest.skip(f"zoo weights for {names} not trained yet (biaslab zoo train)")
    models = [load_model(n, "cpu") for n in names]
    with torch.no_grad():
        for m in models:  # ConViT fills its rel_indices cache on the first forward
            m.module(torch.rand(1, *m.entry.input_size))
    before = [fingerprint(m.module) for m in models]
    # Speed is the benchmark's business (and the labs' cost limits'); here, the work and its side effects.
    out: dict[str, Any] = run_lab(lab_name, names, sample_image(), {})
    assert out["figures"] and all(f["data"] for f in out["figures"])
    for m, fp in zip(models, before, strict=True):
        assert fingerprint_diff(fp, fingerprint(m.module)) == [], m.name


def test_attention_on_a_timm_vit_has_no_probe_set_and_says_so(tmp_path: Any) -> None:
    # A researcher's ImageNet ViT: no probe set of its training data here, so only this image is measured.
    import timm
    from safetensors.torch import save_file

    from backend.jobs.execute import run_lab
    from backend.models.registry import register_timm_model

    ref = timm.create_model("vit_tiny_patch16_224")
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    entry = register_timm_model("vit_tiny_patch16_224", weights=path, alias="test-vit-tiny")
    assert entry.family == "vit"
    image = Image.new("RGB", (224, 224), (120, 60, 30))
    result = run_lab("attention", [entry.name], image, {"probe_size": 8}, device="cpu")
    metrics = result["metrics"][entry.name]
    assert len(metrics["mad_px_per_layer_image"]) == len(ref.blocks)
    assert "mad_px_per_layer_probe" not in metrics and "(this image)" in result["text"]
    diagonal = 16 * 13 * 2**0.5  # farthest patch centres on the 14×14 grid of 16-px patches
    assert all(0 < d < diagonal for d in metrics["mad_px_per_layer_image"])
