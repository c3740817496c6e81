"""Sections 1 and 2: lab time against the bare computation it cannot avoid, and our GradCAM against
pytorch-grad-cam, on the same models and inputs (in this process, both sides interleaved)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from backend.bench.timing import interleaved, median
from backend.jobs.execute import load_model, run_lab
from backend.labs import LabContext, get_lab
from backend.labs.hooks import get_submodule
from backend.labs.probe import preprocess_batch, probe_images
from backend.labs.saliency import CamTarget, cam_target, gradcam, integrated_gradients, prepare_for_backward
from backend.models.preprocess import preprocess

# One shipped model per architecture family.
FAMILY_MODELS = {
    "cnn": "cnn-shapes",
    "vit": "deit-shapes",
    "convit": "convit-shapes",
    "mixer": "mixer-shapes",
    "mlp": "mlp-shapes",
}
IG_STEPS = 32  # the attribution lab's default


def _image() -> Any:
    from backend.data.examples import load_example

    return load_example("shapes-circle")


def bare_forward(model: nn.Module, xs: list[torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            for x in xs:
                model(x)

    return run


def bare_backward_to_layer(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, cls: int
) -> Callable[[], None]:
    """Forward, then the gradient of the class logit with respect to the layer's output, nothing more."""

    def run() -> None:
        store: dict[str, torch.Tensor] = {}
        handle = layer.register_forward_hook(lambda m, a, out: store.__setitem__("a", out))
        try:
            with torch.enable_grad():
                logit = model(x)[0, cls]
                torch.autograd.grad(logit, store["a"])
        finally:
            handle.remove()

    return run


def bare_ig_pass(
    model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, cls: int, n: int
) -> Callable[[], None]:
    """n interpolated inputs in one batch, forward and backward to the input (what IG must compute)."""
    alphas = torch.linspace(0, 1, n).view(-1, 1, 1, 1)

    def run() -> None:
        with torch.enable_grad():
            xs = (baseline + alphas * (x - baseline)).requires_grad_(True)
            torch.autograd.grad(model(xs)[:, cls].sum(), xs)

    return run


def _new_images() -> Iterator[Any]:
    """Test images of `shapes` (the example's size), a different one on every call."""
    from PIL import Image

    from backend.data.registry import load_dataset

    for seed in itertools.count(100):
        for img in load_dataset("shapes", "test", n=16, seed=seed).images:
            yield Image.fromarray(img)


def _lab_sides(
    lab_name: str, model_name: str, params: dict[str, Any], fresh: Iterator[Any]
) -> dict[str, Callable[[], Any]]:
    """The lab as a worker runs it (run_lab: validation, lab.run, figures, OOD check) and lab.run alone.

    `job` sees an image from `fresh` (never seen before in this run) every call, as a first run does;
    `rerun` the same image every time, as a change of settings does: its out-of-distribution score is
    kept (backend/models/ood.py).
    """
    lab = get_lab(lab_name)
    image = _image()
    loaded = load_model(model_name, "cpu")
    p = lab.Params(**params)

    def job() -> None:
        run_lab(lab_name, [model_name], next(fresh), params)

    def rerun() -> None:
        run_lab(lab_name, [model_name], image, params)

    def compute() -> None:
        lab.run(LabContext(models=[loaded], image=image), p)

    return {"job": job, "rerun": rerun, "compute": compute}


def lab_vs_bare(repeats: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    image = _image()
    fresh = _new_images()  # one stream for every row: the OOD reference is shared by all models
    for family, name in FAMILY_MODELS.items():
        model = load_model(name, "cpu").module
        x = preprocess(image, model)
        with torch.no_grad():
            cls = int(model(x).argmax())
        prepare_for_backward(model)
        # predict: one forward per model (no test-time augmentation by default)
        sides: dict[str, Callable[[], Any]] = {
            **_lab_sides("predict", name, {}, fresh),
            "bare": bare_forward(model, [x]),
        }
        rows.append(_row("predict", family, name, "forward of the image", interleaved(sides, repeats)))
        if family in ("vit", "convit"):  # attention: the image and the default probe set, forward only
            probe = get_lab("attention").Params().probe_size  # type: ignore[attr-defined]
            entry = load_model(name, "cpu").entry
            images, _ = probe_images(entry, probe, 0)
            xb = preprocess_batch(images, model)
            sides = {**_lab_sides("attention", name, {}, fresh), "bare": bare_forward(model, [x, xb])}
            rows.append(
                _row(
                    "attention",
                    family,
                    name,
                    f"forward of the image + {probe} probe images",
                    interleaved(sides, repeats),
                )
            )
        entry = load_model(name, "cpu").entry
        target = cam_target(entry, model)
        if target.path:
            layer = _bare_layer(model, target)
            sides = {
                "compute": functools.partial(gradcam, model, target, x, cls, upsample=False),
                "bare": bare_backward_to_layer(model, layer, x, cls),
            }
            rows.append(
                _row(
                    "gradcam",
                    family,
                    name,
                    "forward + backward to the target layer",
                    interleaved(sides, repeats),
                )
            )
        base = torch.zeros_like(x)
        sides = {
            "compute": functools.partial(integrated_gradients, model, x, base, cls, IG_STEPS),
            "bare": bare_ig_pass(model, x, base, cls, IG_STEPS),
        }
        rows.append(
            _row(
                "ig",
                family,
                name,
                f"{IG_STEPS} interpolated inputs, one batched forward + backward",
                interleaved(sides, repeats),
            )
        )
    return rows


def _bare_layer(model: nn.Module, target: CamTarget) -> nn.Module:
    # A token model's target layer outputs (B, N, C) tokens: the gradient to that output is the same work.
    return get_submodule(model, target.path)


def _row(lab: str, family: str, model: str, bare: str, times: dict[str, list[float]]) -> dict[str, Any]:
    b = median(times["bare"])
    row: dict[str, Any] = {
        "lab": lab,
        "family": family,
        "model": model,
        "bare_is": bare,
        "bare_ms": round(1000 * b, 3),
        "compute_ms": round(1000 * median(times["compute"]), 3),
        "compute_ratio": median(times["compute"]) / b,
        "samples": len(times["bare"]),
    }
    for side in ("job", "rerun"):
        if side in times:
            row[f"{side}_ms"] = round(1000 * median(times[side]), 3)
            row[f"{side}_ratio"] = median(times[side]) / b
    return row


# --- Section 2: our GradCAM against pytorch-grad-cam ------------------------------------------------


def _token_reshape(hw: tuple[int, int], n_prefix: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def reshape(t: torch.Tensor) -> torch.Tensor:  # (B, P + N, C) -> (B, C, h, w), as in its ViT tutorial
        tokens = t[:, n_prefix:]
        return tokens.transpose(1, 2).reshape(t.shape[0], t.shape[2], *hw)

    return reshape


def _cases(timm_models: tuple[str, ...]) -> list[tuple[str, nn.Module, CamTarget, torch.Tensor]]:
    """(name, model, target, input): the zoo's GradCAM models on a shapes image, and timm models built
    locally with random weights (nothing is downloaded) on a seeded 224² input."""
    import timm

    cases = []
    image = _image()
    for family, name in FAMILY_MODELS.items():
        loaded = load_model(name, "cpu")
        target = cam_target(loaded.entry, loaded.module)
        if target.path:
            cases.append((f"{name} ({family}, 32²)", loaded.module, target, preprocess(image, loaded.module)))
    gen = torch.Generator().manual_seed(0)
    for timm_name in timm_models:
        torch.manual_seed(0)
        model = timm.create_model(timm_name, pretrained=False).eval()
        x = torch.rand(1, 3, 224, 224, generator=gen)
        m: Any = model  # timm attributes (blocks, feature_info) that nn.Module's typing does not know
        if hasattr(m, "patch_embed"):  # a ViT: the input of its last attention (as the zoo's DeiT)
            target = CamTarget(f"blocks.{len(m.blocks) - 1}.norm1", True, int(m.num_prefix_tokens))
        else:  # a CNN: its last stage
            target = CamTarget(str(m.feature_info[-1]["module"]), False, 0)
        cases.append((f"timm {timm_name} (random init, 224²)", model, target, x))
    return cases


def gradcam_vs_library(repeats: int, timm_models: tuple[str, ...]) -> list[dict[str, Any]]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from backend.labs.attention_maps import grid_size

    rows = []
    for label, model, target, x in _cases(timm_models):
        with torch.no_grad():
            cls = int(model(x).argmax())
        prepare_for_backward(model)
        layer = get_submodule(model, target.path)
        reshape = _token_reshape(grid_size(model), target.n_prefix) if target.token_grid else None
        lib = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape)
        targets = [ClassifierOutputTarget(cls)]
        out: dict[str, np.ndarray] = {}
        ours = functools.partial(_ours, out, model, target, x, cls)
        theirs = functools.partial(_theirs, out, lib, x, targets)
        times = interleaved({"ours": ours, "lib": theirs}, repeats)
        lib.activations_and_grads.release()
        rows.append(
            {
                "model": label,
                "layer": target.path,
                "ours_ms": round(1000 * median(times["ours"]), 3),
                "lib_ms": round(1000 * median(times["lib"]), 3),
                "ratio": median(times["ours"]) / median(times["lib"]),
                "map_correlation": _agreement(out["ours"], out["lib"]),
                "samples": len(times["ours"]),
            }
        )
    return rows


def _ours(out: dict[str, np.ndarray], model: nn.Module, target: CamTarget, x: torch.Tensor, cls: int) -> None:
    out["ours"] = gradcam(model, target, x, cls, upsample=True)[0, 0].numpy()


def _theirs(out: dict[str, np.ndarray], lib: Any, x: torch.Tensor, targets: list[Any]) -> None:
    out["lib"] = lib(input_tensor=x, targets=targets)[0]


def _agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of the two maps (each library rescales differently, so compare shapes, not values)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.shape != b.shape or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def thread_ratio(repeats: int) -> dict[str, Any]:
    """Forward of the zoo CNN with one intra-op thread per CPU (torch's default) against one thread,
    interleaved: on a shared CPU extra threads can cost far more than they give for models this small."""
    import os

    model = load_model(FAMILY_MODELS["cnn"], "cpu").module
    x = preprocess(_image(), model)
    threads = torch.get_num_threads()

    def at(n: int) -> Callable[[], None]:
        def run() -> None:
            torch.set_num_threads(n)
            try:
                with torch.no_grad():
                    for _ in range(5):
                        model(x)
            finally:
                torch.set_num_threads(threads)

        return run

    per_cpu = os.cpu_count() or 1
    times = interleaved({"default": at(per_cpu), "one": at(1)}, repeats)
    return {
        "model": FAMILY_MODELS["cnn"],
        "threads": per_cpu,
        "default_ms": 1000 * median(times["default"]) / 5,
        "one_thread_ms": 1000 * median(times["one"]) / 5,
        "ratio": median(times["default"]) / median(times["one"]),
    }
