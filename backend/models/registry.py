"""Write-once model registry in the style of timm's `register_model` / `create_model`.

Every entry is a typed config (like timm's `PretrainedCfg`) that carries what the labs and the UI need
without building the model: architecture family, task, training regime, dataset, input config, class
names, the GradCAM target, a processor/tokenizer for language models, where its weights come from, a
description, a citation and, for trained zoo models, the JSON card written next to its weights.

This module is a leaf: the model modules import it to register, and `backend.models` imports them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from backend.config import get_settings
from backend.registry import NotRegistered, Registry

# What the model does, which decides the labs that take it.
Task = Literal["classification", "denoise", "vqa"]
TASKS: tuple[str, ...] = ("classification", "denoise", "vqa")
# Where its parameters come from: the zoo's shipped file, a researcher's file, the Hub, or computed
# from a dataset when a worker first needs it (closed-form models such as the Wiener denoiser).
Source = Literal["zoo", "file", "hub", "computed"]
ProgressFn = Callable[[float, str], None]


class UnknownModel(NotRegistered):
    """No model of that name is registered."""


class ModelNotAvailable(RuntimeError):
    """The model is registered but its weights cannot be found or loaded."""


@dataclass(frozen=True)
class GradcamTarget:
    """The layer GradCAM reads, and how to turn its output into a (C, h, w) map."""

    layer: str  # module path, e.g. "layer3" or "blocks.5.norm1"
    token_grid: bool = False  # output is (B, N, C) tokens: reshape the patch tokens to a grid
    num_prefix_tokens: int = 0  # class/distillation tokens to drop before that reshape


def _no_progress(fraction: float, message: str = "") -> None:
    return None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str  # architecture: "cnn", "vit", "convit", "mixer", "mlp", "unet", ... or "timm" for others
    task: Task
    dataset: str  # what it was trained on (or computed from): a registered dataset name, or "imagenet"
    builder: Callable[[], nn.Module]  # the architecture with its own initialisation, no weights
    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    description: str = ""
    citation: str = ""
    regime: str = "standard"  # how it was trained: "standard", "pgd eps=8/255", ...
    source: Source = "zoo"
    # zoo: file stem inside the weights directory; file: an explicit path; hub/computed: None.
    weights: str | None = None
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    gradcam: GradcamTarget | None = None
    processor: str | None = None  # Hugging Face processor or tokenizer (path or Hub id), for vqa models
    # source "computed": fills the built model's parameters from data, reporting progress (0..1).
    compute: Callable[[nn.Module, ProgressFn], None] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)  # how `biaslab zoo train` makes the weights
    timm_name: str | None = None  # the timm architecture, for models that come from timm
    # Which set it belongs to: "zoo" (the shapes teaching zoo) or "imagenet" (photo models, opt-in set).
    # The UI keeps the sets apart, so nobody compares a 0.3 M shapes model with an ImageNet one.
    model_set: str = "zoo"
    # The dataset labs draw probe images from, when it is not `dataset` (ImageNet models: the photos).
    probe_set: str | None = None
    # Returns why the model cannot be built on this machine (e.g. weights not in the local cache), or
    # None when it can; checked on every listing and job, so it never loads anything.
    availability: Callable[[], str | None] | None = None

    @property
    def weights_path(self) -> Path | None:
        if self.weights is None:
            return None
        path = Path(self.weights)
        if path.suffix == ".safetensors" or path.is_absolute():
            return path
        return get_settings().weights_dir / f"{self.weights}.safetensors"

    @property
    def card_path(self) -> Path | None:
        path = self.weights_path
        return path.with_suffix(".json") if path is not None and self.source == "zoo" else None

    def card(self) -> dict[str, Any] | None:
        path = self.card_path
        if path is None or not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def pretrained_cfg(self) -> dict[str, Any]:
        """timm-style data config, so `timm.data.resolve_model_data_config` works for every model."""
        return {
            "input_size": self.input_size,
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": "center",
            "num_classes": len(self.class_names),
        }


_MODELS: Registry[ModelEntry] = Registry("model", UnknownModel)


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add an entry; names are write-once so two modules cannot silently shadow each other."""
    if entry.task not in TASKS:
        raise ValueError(f"model {entry.name!r}: unknown task {entry.task!r}; tasks are {', '.join(TASKS)}")
    if entry.source == "computed" and entry.compute is None:
        raise ValueError(f"model {entry.name!r} is computed from data but has no compute function")
    return _MODELS.add(entry.name, entry)


def unavailable_reason(entry: ModelEntry) -> str | None:
    """One line saying why this model cannot run here, or None when it can."""
    return entry.availability() if entry.availability is not None else None


def list_models() -> list[ModelEntry]:
    return list(_MODELS)


def get_entry(name: str) -> ModelEntry:
    return _MODELS.get(name)


@lru_cache(maxsize=64)
def model_architecture(name: str) -> dict[str, Any] | None:
    """Layers, heads, GPSA layers and patch grid of a transformer-style model, else None.

    Built on the meta device: no memory and no weights, just the module tree. The UI bounds its layer
    and head fields with it, and labs refuse settings a chosen model does not have.
    """
    entry = get_entry(name)
    with torch.device("meta"):
        if entry.timm_name is not None:  # the architecture alone: its builder would read the weights
            import timm

            m = timm.create_model(entry.timm_name.split(".")[0], pretrained=False)
        else:
            m = entry.builder()
    blocks = getattr(m, "blocks", None)
    if blocks is None or not len(blocks):
        return None
    grid = getattr(getattr(m, "patch_embed", None), "grid_size", None)
    return {
        "layers": len(blocks),
        "heads": getattr(getattr(blocks[0], "attn", None), "num_heads", None),
        "gpsa_layers": sum(bool(getattr(b, "use_gpsa", False)) for b in blocks),
        "patch_grid": list(grid) if grid else None,
    }


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read weights without unpickling arbitrary objects: safetensors, or torch.load(weights_only=True)."""
    if not path.exists():
        raise ModelNotAvailable(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelNotAvailable(f"{path} does not hold a state dict")
    return state


def create_model(
    name: str,
    *,
    device: str | torch.device = "cpu",
    weights: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> nn.Module:
    """Build a registered model with its parameters, in eval mode, with timm's `pretrained_cfg` attached.

    Parameters come from `weights` if given, else from the entry's source: its weights file, the Hub
    (inside the builder, through timm), or computed from its dataset (reported through `progress`).
    """
    entry = get_entry(name)
    reason = unavailable_reason(entry)
    if reason is not None:
        raise ModelNotAvailable(f"model {name!r} is not available here: {reason}")
    model = entry.builder()
    path = Path(weights) if weights is not None else entry.weights_path
    if path is not None:
        state = load_state_dict(path)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelNotAvailable(f"weights in {path} do not fit model {name!r}: {exc}") from exc
    elif entry.source == "computed":
        assert entry.compute is not None  # register_model checks it
        entry.compute(model, progress or _no_progress)
    elif entry.source == "zoo":
        raise ModelNotAvailable(f"model {name!r} has no weights; train it with `biaslab zoo train {name}`")
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **entry.pretrained_cfg()}  # type: ignore[assignment]
    return model.eval().to(device)


def register_timm_model(
    timm_name: str, weights: str | Path | None = None, *, alias: str | None = None, description: str = ""
) -> ModelEntry:
    """Register any timm architecture with pretrained weights from a local file or from the Hub.

    Uses timm's own pretrained-config mechanism: with a file, `pretrained_cfg_overlay=dict(file=...)`
    makes timm load (and adapt) it exactly as it would a downloaded checkpoint; without one timm fetches
    the Hub weights, which needs a network.
    """
    import timm

    if not timm.is_model(timm_name.split(".")[0]):
        raise UnknownModel(f"{timm_name!r} is not a timm architecture")
    cfg = timm.models.get_pretrained_cfg(timm_name) if timm_name.count(".") else None
    if cfg is None:
        cfg = timm.models.get_pretrained_cfg(timm_name.split(".")[0])
    cfg_dict = cfg.to_dict() if cfg is not None else {}
    num_classes = int(cfg_dict.get("num_classes") or 1000)
    class_names = _timm_class_names(cfg_dict, num_classes)
    file = str(Path(weights).resolve()) if weights is not None else None

    def build() -> nn.Module:
        return timm_pretrained(timm_name, file)

    family, gradcam = _timm_family(timm_name)
    entry = ModelEntry(
        name=alias or timm_name,
        family=family,
        task="classification",
        dataset=str(cfg_dict.get("tag") or "imagenet"),
        builder=build,
        input_size=tuple(cfg_dict.get("input_size") or (3, 224, 224)),  # type: ignore[arg-type]
        mean=tuple(cfg_dict.get("mean") or (0.485, 0.456, 0.406)),
        std=tuple(cfg_dict.get("std") or (0.229, 0.224, 0.225)),
        class_names=class_names,
        description=description or f"timm {timm_name} with pretrained weights ({file or 'Hub'})",
        citation=str(cfg_dict.get("paper_ids") or cfg_dict.get("hf_hub_id") or "timm"),
        source="file" if file else "hub",
        weights=None,  # the builder loads it through timm's own pretrained-config mechanism
        interpolation=str(cfg_dict.get("interpolation") or "bicubic"),
        crop_pct=float(cfg_dict.get("crop_pct") or 0.875),
        gradcam=gradcam,
        timm_name=timm_name,
    )
    # The build closure owns the file; keep create_model from loading it a second time.
    return register_model(entry)


def timm_pretrained(timm_name: str, file: str | Path | None) -> nn.Module:
    """timm's own pretrained loading; with a file, `pretrained_cfg_overlay=dict(file=...)` makes timm load
    (and adapt) it exactly as it would a downloaded checkpoint, with no network."""
    import timm

    overlay = {"file": str(file)} if file else None
    try:
        return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as exc:  # offline Hub access or a bad file: say which
        where = file or "the Hugging Face Hub"
        raise ModelNotAvailable(f"could not load pretrained {timm_name!r} from {where}: {exc}") from exc


# timm classes whose family the labs know; any other architecture is family "timm" (labs open to all).
_TIMM_FAMILIES = {
    "ConVit": "convit",
    "VisionTransformer": "vit",
    "VisionTransformerDistilled": "vit",  # DeiT distilled: CLS + distillation token, both prefix tokens
    "MlpMixer": "mixer",
}
_TIMM_CNNS = {
    "ResNet", "ResNetV2", "ConvNeXt", "EfficientNet", "RegNet", "MobileNetV3", "DenseNet", "VGG",
    "InceptionV3", "InceptionResnetV2",
}  # fmt: skip


def _timm_family(timm_name: str) -> tuple[str, GradcamTarget | None]:
    """The family of a timm architecture, and for CNNs their last stage as the GradCAM layer.

    The model is built on the meta device: no memory, no weights, just its class and feature_info.
    """
    import timm

    with torch.device("meta"):
        model = timm.create_model(timm_name.split(".")[0], pretrained=False)
    cls = type(model).__name__
    if cls in _TIMM_FAMILIES:
        return _TIMM_FAMILIES[cls], None
    feature_info: list[dict[str, Any]] = list(getattr(model, "feature_info", None) or [])
    if cls in _TIMM_CNNS and feature_info:
        return "cnn", GradcamTarget(str(feature_info[-1]["module"]))
    return "timm", None


def register_timm_specs(specs: list[str]) -> list[ModelEntry]:
    """Register researchers' own timm checkpoints from `NAME=PATH` (a local file) or `NAME` (the Hub).

    The spec's timm name is also the model's name in the zoo, so `--model NAME` picks it.
    """
    entries = []
    for spec in specs:
        name, _, path = spec.partition("=")
        if path and not Path(path).is_file():
            raise ModelNotAvailable(f"no checkpoint file at {path!r} for timm model {name!r}")
        entries.append(register_timm_model(name.strip(), weights=path or None))
    return entries


def _timm_class_names(cfg: dict[str, Any], num_classes: int) -> tuple[str, ...]:
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(cfg) if cfg else None
    if subset is not None or num_classes in (1000, 11821, 21841, 21843):
        info = ImageNetInfo(subset or "imagenet-1k")
        if info.num_classes() == num_classes:
            return tuple(info.index_to_description(i) for i in range(num_classes))
    return tuple(f"class {i}" for i in range(num_classes))
