"""The ImageNet model set (opt-in, `BIASLAB_MODEL_SET=imagenet`): timm's pretrained models for real photos.

The shapes zoo knows 8 procedural classes at 32×32, so a photo of a cat is "ring". The papers' claims
are about ImageNet models, and timm publishes exactly those weights: ConViT (d'Ascoli et al., ICML 2021)
and DeiT (Touvron et al., ICML 2021) with their distilled versions, a ResNet-50 (Wightman et al., ResNet
strikes back, 2021), an MLP-Mixer (Tolstikhin et al., NeurIPS 2021) and two adversarially trained
Inception models (Kurakin et al., ICLR 2017; Tramèr et al., ICLR 2018). `IMAGENET_MODELS` below is the
one list: registration, the Dockerfile's download step (`python -m backend.models.imagenet --download`)
and the tests all read it.

Weights come only from the local Hugging Face cache, never at request time: a model whose weights are
cached is built through timm's own pretrained loading with a file overlay
(`timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...))`, the same path as a
researcher's `--timm NAME=PATH`), so no network is touched even without HF_HUB_OFFLINE. A model whose
weights are not there is listed as unavailable with the reason, and labs refuse it with a 409.

Class names are ImageNet-1k's (timm ships them offline, `timm.data.ImageNetInfo`); input size, crop,
interpolation, mean and std are each model's own (`timm.data.resolve_data_config`). Their probe set is
the handful of natural photos in `backend.data.imagenet_photos`.

    python -m backend.models.imagenet --list                 # the set, and which weights are cached
    python -m backend.models.imagenet --download             # fetch them into the HF cache (needs network)
    python -m backend.models.imagenet --top1 [--device cuda] # top-1 on the photo probe set (needs weights)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from backend.config import get_settings
from backend.models.registry import (
    ModelEntry,
    _timm_family,
    get_entry,
    list_models,
    register_model,
    timm_pretrained,
)

SET_NAME = "imagenet"
DATASET = "imagenet"
PROBE_SET = "imagenet-photos"
# What timm's Hub loader looks for in a `timm/...` repository, in its order (safetensors first).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

_DEIT = "Touvron et al., Training data-efficient image transformers & distillation through attention, ICML 2021 (arXiv 2012.12877)"  # noqa: E501
_CONVIT = "d'Ascoli et al., ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases, ICML 2021 (arXiv 2103.10697)"  # noqa: E501


@dataclass(frozen=True)
class PhotoModel:
    """One model of the set: the timm name (architecture.tag) is also its name in the registry."""

    timm_name: str
    regime: str
    description: str
    citation: str


IMAGENET_MODELS: tuple[PhotoModel, ...] = (
    *(
        PhotoModel(
            f"convit_{size}.fb_in1k",
            "standard (DeiT recipe)",
            f"ConViT-{size[0].upper()}: gated positional self-attention in its first 10 layers; ImageNet-1k.",
            _CONVIT,
        )
        for size in ("tiny", "small", "base")
    ),
    *(
        PhotoModel(
            f"deit_{size}_patch16_224.fb_in1k",
            "standard (DeiT recipe)",
            f"DeiT-{size[0].upper()}: plain ViT, 16×16 patches; ImageNet-1k.",
            _DEIT,
        )
        for size in ("tiny", "small")
    ),
    *(
        PhotoModel(
            f"deit_{size}_distilled_patch16_224.fb_in1k",
            "distilled from a RegNetY-16GF CNN teacher",
            f"DeiT-{size[0].upper()} distilled: a ViT with a distillation token trained to match a CNN.",
            _DEIT,
        )
        for size in ("tiny", "small")
    ),
    PhotoModel(
        "resnet50.a1_in1k",
        "standard (ResNet strikes back, procedure A1)",
        "ResNet-50, trained on ImageNet-1k with timm's A1 recipe.",
        "Wightman, Touvron & Jégou, ResNet strikes back, 2021 (arXiv 2110.00476)",
    ),
    PhotoModel(
        "mixer_b16_224.goog_in21k_ft_in1k",
        "pretrained on ImageNet-21k, fine-tuned on ImageNet-1k",
        "MLP-Mixer-B/16: token- and channel-mixing MLPs only, no attention, no convolution.",
        "Tolstikhin et al., MLP-Mixer: An all-MLP Architecture for Vision, NeurIPS 2021 (arXiv 2105.01601)",
    ),
    PhotoModel(
        "inception_v3.tf_adv_in1k",
        "adversarial training (one-step attacks, Kurakin et al.)",
        "Inception-v3 adversarially trained on ImageNet-1k (299 px inputs).",
        "Kurakin, Goodfellow & Bengio, Adversarial Machine Learning at Scale, ICLR 2017 (arXiv 1611.01236)",
    ),
    PhotoModel(
        "inception_resnet_v2.tf_ens_adv_in1k",
        "ensemble adversarial training (Tramèr et al.)",
        "Inception-ResNet-v2 trained with adversarial examples from an ensemble of models (299 px inputs).",
        "Tramèr et al., Ensemble Adversarial Training: Attacks and Defenses, ICLR 2018 (arXiv 1705.07204)",
    ),
)
NAMES: tuple[str, ...] = tuple(m.timm_name for m in IMAGENET_MODELS)


def hub_repo(timm_name: str) -> str:
    """The Hugging Face repository timm loads this model's weights from, e.g. `timm/convit_tiny.fb_in1k`."""
    import timm

    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f"timm has no Hugging Face weights for {timm_name!r}")
    return str(cfg.hf_hub_id)


def cache_dir() -> Path | None:
    return get_settings().hf_cache_dir


def cached_weights(timm_name: str, where: Path | None = None) -> Path | None:
    """The weights file in the local Hugging Face cache, or None; looks only at the disk."""
    from huggingface_hub import try_to_load_from_cache

    where = where if where is not None else cache_dir()
    for filename in WEIGHT_FILES:
        found = try_to_load_from_cache(hub_repo(timm_name), filename, cache_dir=where)
        if isinstance(found, str):  # else None (unknown) or a "known not to exist" marker
            return Path(found)
    return None


def _where() -> str:
    from huggingface_hub import constants

    return str(cache_dir() or constants.HF_HUB_CACHE)


def _availability(timm_name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if cached_weights(timm_name) is not None:
            return None
        return (
            f"its ImageNet weights are not in the local Hugging Face cache ({_where()}); the Docker image "
            "downloads them at build time (python -m backend.models.imagenet --download)"
        )

    return check


def _builder(timm_name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        file = cached_weights(timm_name)
        if file is None:  # create_model checks availability first; this is a race with a cache cleanup
            raise FileNotFoundError(f"{timm_name}: weights left the Hugging Face cache ({_where()})")
        return timm_pretrained(timm_name, file)

    return build


def imagenet_entry(spec: PhotoModel) -> ModelEntry:
    """The registry entry of one model: its timm family, ImageNet class names and own data config."""
    import timm
    from timm.data import resolve_data_config

    from backend.data.imagenet_photos import imagenet_class_names

    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    assert cfg is not None and cfg.num_classes == 1000, spec.timm_name
    cfg_dict = cfg.to_dict()
    data = resolve_data_config(pretrained_cfg=cfg_dict)
    family, gradcam = _timm_family(spec.timm_name)
    return ModelEntry(
        name=spec.timm_name,
        family=family,
        task="classification",
        dataset=DATASET,
        builder=_builder(spec.timm_name),
        input_size=tuple(data["input_size"]),  # type: ignore[arg-type]
        mean=tuple(data["mean"]),
        std=tuple(data["std"]),
        class_names=imagenet_class_names(),  # every model of the set has ImageNet-1k's 1000 classes
        description=spec.description,
        citation=spec.citation,
        regime=spec.regime,
        source="hub",
        interpolation=str(data["interpolation"]),
        crop_pct=float(data["crop_pct"]),
        gradcam=gradcam,
        timm_name=spec.timm_name,
        model_set=SET_NAME,
        probe_set=PROBE_SET,
        availability=_availability(spec.timm_name),
    )


def register_model_set(name: str) -> list[ModelEntry]:
    """Register a model set by name ("" registers nothing); a second call returns the same entries."""
    if not name:
        return []
    if name != SET_NAME:
        raise ValueError(f"unknown model set {name!r}; the sets are: {SET_NAME}")
    known = {e.name for e in list_models()}
    return [
        get_entry(s.timm_name) if s.timm_name in known else register_model(imagenet_entry(s))
        for s in IMAGENET_MODELS
    ]


def download(names: Sequence[str] = NAMES, where: Path | None = None) -> dict[str, Path]:
    """Fetch the weights into the Hugging Face cache, the files timm's loader would pick (needs network)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    paths: dict[str, Path] = {}
    for name in names:
        for filename in WEIGHT_FILES:
            try:
                paths[name] = Path(hf_hub_download(hub_repo(name), filename, cache_dir=where))
                break
            except EntryNotFoundError:
                continue
        else:
            raise FileNotFoundError(f"{hub_repo(name)} has none of {', '.join(WEIGHT_FILES)}")
        print(f"{name}: {paths[name]}", flush=True)
    return paths


def photo_top1(names: Sequence[str] = NAMES, device: str = "cpu") -> dict[str, dict[str, object]]:
    """Top-1 on the photo probe set: right when the top class is one a person would accept (ACCEPTED)."""
    from backend.data.imagenet_photos import ACCEPTED, PHOTOS, load_photo
    from backend.labs.probe import preprocess_batch
    from backend.models.registry import create_model

    register_model_set(SET_NAME)
    images = np.stack([load_photo(p) for p in PHOTOS])
    out: dict[str, dict[str, object]] = {}
    for name in names:
        model = create_model(name, device=device)
        with torch.no_grad():  # not inference_mode: ConViT caches tensors (DESIGN pitfall)
            top = model(preprocess_batch(images, model).to(device)).argmax(-1).tolist()
        classes = get_entry(name).class_names
        right = [t in ACCEPTED[p] for p, t in zip(PHOTOS, top, strict=True)]
        out[name] = {
            "top1": sum(right) / len(right),
            "n": len(right),
            "predictions": {p: classes[t] for p, t in zip(PHOTOS, top, strict=True)},
        }
    return out


def probe_report(names: Sequence[str], device: str = "cpu") -> dict[str, dict[str, object]]:
    """Per layer, on the photo probe set (its 5 photos): mean attention distance of each ViT/ConViT, and
    each ConViT's mean gate σ(λ) per gated layer, as the attention and gating labs measure them."""
    from backend.data.imagenet_photos import PHOTOS
    from backend.jobs.execute import run_lab

    register_model_set(SET_NAME)
    image = _photo(next(iter(PHOTOS)))
    out: dict[str, dict[str, object]] = {}
    for name in names:
        family = get_entry(name).family
        if family not in ("vit", "convit"):
            continue
        att = run_lab("attention", [name], image, {"probe_size": len(PHOTOS)}, device=device)["metrics"]
        row: dict[str, object] = {"mad_px_per_layer": att[name]["mad_px_per_layer_probe"]}
        if family == "convit":
            gates = np.asarray(
                run_lab("gating", [name], image, {"probe_size": 16, "compare_tasks": False}, device=device)[
                    "metrics"
                ][name]["gate_sigma_lambda"]
            )
            row["mean_gate_per_gpsa_layer"] = np.round(gates.mean(1), 3).tolist()
        out[name] = row
    return out


def _photo(name: str) -> Image.Image:
    from backend.data.imagenet_photos import load_photo

    return Image.fromarray(load_photo(name))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--list", action="store_true", help="print the set and whether each is cached")
    parser.add_argument("--download", action="store_true", help="download every model of the set")
    parser.add_argument("--top1", action="store_true", help="top-1 of each cached model on the photos")
    parser.add_argument("--probe-report", action="store_true", help="per-layer attention on the photos")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.download:
        download(NAMES, cache_dir())
    if args.top1:
        cached = [n for n in NAMES if cached_weights(n) is not None]
        for name, r in photo_top1(cached, args.device).items():
            print(f"{name:40s} top-1 {r['top1']:.0%} of {r['n']} photos  {r['predictions']}")
        if not cached:
            print(f"no weights of the set in the Hugging Face cache ({_where()}); nothing measured")
    if args.probe_report:
        cached = [n for n in NAMES if cached_weights(n) is not None]
        for name, row in probe_report(cached, args.device).items():
            print(name, row)
        if not cached:
            print(f"no weights of the set in the Hugging Face cache ({_where()}); nothing measured")
    if args.list or not (args.download or args.top1 or args.probe_report):
        for name in NAMES:
            file = cached_weights(name)
            print(f"{name:40s} {file if file else 'not cached'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
