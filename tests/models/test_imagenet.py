"""The ImageNet model set (issue 16), with no download: the smallest architectures of the set, randomly
initialised, are saved into a Hugging Face cache laid out as the Hub's, and load through the real path
(cache lookup, then timm's pretrained loading with a file overlay). Each lab they join runs on them with
ImageNet class names; without weights the server lists them as unavailable and keeps working.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.data import create_transform, resolve_data_config

import backend.config
from backend.config import Settings
from backend.data import load_dataset
from backend.data.examples import load_example
from backend.data.imagenet_photos import ACCEPTED, PHOTOS, load_photo
from backend.jobs.execute import MODELS, run_lab
from backend.jobs.validate import JobRequestError, validate_job
from backend.labs import list_labs
from backend.main import create_app
from backend.models import create_model, get_entry
from backend.models.imagenet import NAMES, download, hub_repo, photo_top1, probe_report, register_model_set
from backend.models.registry import unavailable_reason

REPO = Path(__file__).resolve().parents[2]
CONVIT, DEIT, RESNET = "convit_tiny.fb_in1k", "deit_tiny_distilled_patch16_224.fb_in1k", "resnet50.a1_in1k"
SMALL = (CONVIT, DEIT, RESNET)
REVISION = "0" * 40


def _snapshot(cache: Path, name: str) -> Path:
    """Where huggingface_hub keeps `model.safetensors` of the model's repository at revision `main`."""
    repo = cache / f"models--{hub_repo(name).replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    snap = repo / "snapshots" / REVISION
    snap.mkdir(parents=True, exist_ok=True)
    return snap / "model.safetensors"


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("hf-hub")
    torch.manual_seed(0)
    for name in SMALL:
        model = timm.create_model(name.split(".")[0], pretrained=False)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(_snapshot(cache, name)))
    return cache


@pytest.fixture(scope="module")
def photo_set(hf_cache: Path) -> Iterator[Settings]:
    """The set enabled, reading that cache; the process's settings and model cache restored after."""
    settings = Settings(model_set="imagenet", hf_cache_dir=hf_cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backend.config, "_current", settings)
        torch.set_num_threads(1)
        register_model_set(settings.model_set)
        yield settings
    for name in SMALL:  # random weights under real names: never let a later test meet them
        MODELS.discard(name)


def reference(name: str, cache: Path) -> torch.nn.Module:
    """The same architecture with the saved tensors, loaded by hand (not through the project)."""
    model = timm.create_model(name.split(".")[0], pretrained=False)
    model.load_state_dict(load_file(str(_snapshot(cache, name))))
    return model.eval()


def test_the_set_is_opt_in_and_registers_its_real_configs() -> None:
    assert Settings().model_set == "" and register_model_set("") == []
    with pytest.raises(ValueError, match="model_set"):
        Settings(model_set="imagenet21k")  # type: ignore[arg-type]
    entries = {e.name: e for e in register_model_set("imagenet")}
    assert tuple(entries) == NAMES and len(NAMES) == 11
    for name, e in entries.items():
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        assert (e.input_size, e.mean, e.std, e.crop_pct) == (
            tuple(cfg["input_size"]),
            tuple(cfg["mean"]),
            tuple(cfg["std"]),
            cfg["crop_pct"],
        )
        assert e.class_names[281] == "tabby, tabby cat" and len(e.class_names) == 1000
        assert e.model_set == "imagenet" and e.probe_set == "imagenet-photos"
    families = {n: e.family for n, e in entries.items()}
    assert {families[n] for n in NAMES if n.startswith("convit")} == {"convit"}
    assert {families[n] for n in NAMES if n.startswith("deit")} == {"vit"}
    assert families["mixer_b16_224.goog_in21k_ft_in1k"] == "mixer"
    assert entries["inception_v3.tf_adv_in1k"].input_size == (3, 299, 299)
    assert entries["inception_v3.tf_adv_in1k"].gradcam.layer == "Mixed_7c"  # type: ignore[union-attr]
    assert "adversarial" in entries["inception_resnet_v2.tf_ens_adv_in1k"].regime


def test_dockerfile_downloads_exactly_the_registered_set(monkeypatch: pytest.MonkeyPatch) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "python -m backend.models.imagenet --download" in dockerfile
    named = set(re.findall(r"timm/[\w.\-]+", dockerfile)) | {
        n for n in re.findall(r"[a-z0-9_]+\.[a-z0-9_]+_in1k", dockerfile)
    }
    assert not named, f"the Dockerfile names models itself; the module's list is the one list: {named}"
    fetched: list[tuple[str, str]] = []

    def fake_hub_download(repo: str, filename: str, cache_dir: object = None) -> str:
        fetched.append((repo, filename))
        return f"/cache/{repo}/{filename}"

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_hub_download)
    download()  # what `--download` runs
    registered = {hub_repo(e.name) for e in register_model_set("imagenet")}
    assert [r for r, _ in fetched] == [hub_repo(n) for n in NAMES] and set(dict(fetched)) == registered


def test_photo_probe_set_is_the_labelled_photos_then_crops() -> None:
    s = load_dataset("imagenet-photos", "test", n=7, seed=1)
    names = list(PHOTOS)
    assert (
        sorted(s.meta["photo"][:5].tolist()) == list(range(5))
        and s.meta["crop"].tolist() == [0] * 5 + [1] * 2
    )
    assert all(int(y) == ACCEPTED[names[p]][0] for y, p in zip(s.labels, s.meta["photo"], strict=True))
    assert s.class_names[ACCEPTED["coffee"][0]] == "espresso" and s.images.shape == (7, 384, 384, 3)


def test_weights_load_from_the_cache_through_timm_file_overlay(photo_set: Settings, hf_cache: Path) -> None:
    for name in SMALL:
        assert unavailable_reason(get_entry(name)) is None
        saved = load_file(str(_snapshot(hf_cache, name)))
        loaded = create_model(name).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    reason = unavailable_reason(get_entry("convit_base.fb_in1k"))
    assert reason is not None and str(hf_cache) in reason  # not in this cache: unavailable, with where


def test_predict_and_top1_on_photos_agree_with_timm_by_hand(photo_set: Settings, hf_cache: Path) -> None:
    image = load_example("chelsea")
    out = run_lab("predict", list(SMALL), image, {"top_k": 3}, device="cpu")
    top1 = photo_top1(SMALL)
    photos = np.stack([load_photo(p) for p in PHOTOS])
    for name in SMALL:
        ref = reference(name, hf_cache)
        transform = create_transform(**resolve_data_config(model=ref))
        with torch.no_grad():
            probs = torch.softmax(ref(transform(image).unsqueeze(0)), -1)[0]  # type: ignore[operator]
            tops = ref(torch.stack([transform(Image.fromarray(p)) for p in photos])).argmax(-1).tolist()  # type: ignore[misc]
        top = int(probs.argmax())
        assert out["metrics"][name]["top1"] == get_entry(name).class_names[top]
        assert out["metrics"][name]["confidence"] == pytest.approx(float(probs[top]), abs=1e-5)
        right = [t in ACCEPTED[p] for p, t in zip(PHOTOS, tops, strict=True)]
        assert top1[name]["n"] == 5 and top1[name]["top1"] == sum(right) / 5
    # No out-of-distribution verdict borrowed from the shapes models: said in words instead.
    assert out["metrics"]["ood"]["in_distribution"] is None
    assert out["text"].startswith("Not checked whether this image is like the imagenet training data")


def test_attention_and_gating_report_on_the_photo_probe_set(photo_set: Settings, hf_cache: Path) -> None:
    gates = torch.sigmoid(
        torch.stack([b.attn.gating_param for b in reference(CONVIT, hf_cache).blocks[:10]])
    ).detach()  # (10 GPSA layers, 4 heads), read from the saved tensors by hand
    report = probe_report([CONVIT, DEIT])  # the attention lab, then the gating lab, on all 5 photos
    assert len(report[CONVIT]["mad_px_per_layer"]) == len(report[DEIT]["mad_px_per_layer"]) == 12  # type: ignore[arg-type]
    np.testing.assert_allclose(report[CONVIT]["mean_gate_per_gpsa_layer"], gates.mean(1).numpy(), atol=2e-3)  # type: ignore[arg-type]
    assert "mean_gate_per_gpsa_layer" not in report[DEIT]


def test_attribution_runs_with_imagenet_classes(photo_set: Settings, hf_cache: Path) -> None:
    # The distilled DeiT: GradCAM must drop both prefix tokens (CLS and distillation) to find its grid.
    params = {"ig_steps": 4, "references": 1, "randomisation": "none", "probe_size": 0}
    image = load_example("rocket")
    m = run_lab("attribution", [DEIT], image, params, device="cpu")["metrics"][DEIT]
    ref = reference(DEIT, hf_cache)
    with torch.no_grad():
        x = create_transform(**resolve_data_config(model=ref))(image).unsqueeze(0)  # type: ignore[operator]
        top = int(ref(x).argmax())
    assert m["explained_class"] == get_entry(DEIT).class_names[top]
    assert m["gradcam_layer"] == "blocks.-1.norm1"
    assert m["ig_baseline"] == "blurred"  # expected gradients needs ImageNet training images: none here


def test_calibration_says_why_it_cannot_measure_imagenet_models(photo_set: Settings) -> None:
    with pytest.raises(JobRequestError, match="no labelled ImageNet validation images") as err:
        validate_job("calibration", [CONVIT], {})
    assert err.value.status == 422


def test_server_lists_the_set_unavailable_without_weights_and_keeps_working(tmp_path: Path) -> None:
    settings = Settings(model_set="imagenet", hf_cache_dir=tmp_path / "empty", rate_limit_per_minute=0)
    with pytest.MonkeyPatch.context() as mp, TestClient(create_app(settings, mount_ui=False)) as c:
        mp.setattr(backend.config, "_current", settings)
        models = {m["name"]: m for m in c.get("/api/models").json()}
        for name in NAMES:
            assert models[name]["model_set"] == "imagenet" and models[name]["available"] is False
            assert "not in the local Hugging Face cache" in models[name]["unavailable_reason"]
        assert models["cnn-shapes"]["available"] is True and models["cnn-shapes"]["model_set"] == "zoo"
        refused = c.post(
            "/api/jobs", json={"lab": "predict", "models": [CONVIT], "image_id": "example-chelsea"}
        )
        assert (
            refused.status_code == 409 and "not in the local Hugging Face cache" in refused.json()["detail"]
        )
        # Every lab still takes its zoo models; predict runs to the end.
        ran = c.post(
            "/api/jobs", json={"lab": "predict", "models": ["cnn-shapes"], "image_id": "example-chelsea"}
        )
        assert ran.status_code == 202
        for lab in list_labs():
            body = {"lab": lab.name, "models": list(lab.default_models), "image_id": "example-chelsea"}
            if lab.text_input is not None and lab.text_input.suggestions:
                body["text"] = lab.text_input.suggestions[0]
            r = c.post("/api/jobs", json=body)
            assert r.status_code == 202, (lab.name, r.json())
            c.delete(f"/api/jobs/{r.json()['id']}")
        deadline = time.monotonic() + 60
        while (view := c.get(f"/api/jobs/{ran.json()['id']}").json())["status"] in ("queued", "started"):
            assert time.monotonic() < deadline, view
            time.sleep(0.1)
        assert view["status"] == "finished", view
