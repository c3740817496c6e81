"""Each model's own preprocessing, from its timm data config (never a hard-coded 224/ImageNet)."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config
from torch import nn


def data_config(model: nn.Module) -> dict:
    return resolve_model_data_config(model)


# One transform per loaded model: building it from the data config cost more than applying it to a
# small image. Weak keys, so a model dropped from the worker's cache takes its transform with it.
_TRANSFORMS: weakref.WeakKeyDictionary[nn.Module, Callable[[Image.Image], torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def _transform(model: nn.Module) -> Callable[[Image.Image], torch.Tensor]:
    transform = _TRANSFORMS.get(model)
    if transform is None:
        transform = _TRANSFORMS[model] = create_transform(**data_config(model), is_training=False)
    return transform


def preprocess(image: Image.Image, model: nn.Module) -> torch.Tensor:
    """PIL image -> (1, C, H, W) tensor, exactly as the model was trained to see it."""
    x = _transform(model)(image.convert("RGB"))
    assert isinstance(x, torch.Tensor)
    return x.unsqueeze(0)


def display_image(image: Image.Image, model: nn.Module, x: torch.Tensor | None = None) -> np.ndarray:
    """The resized/cropped view the model sees, as (H, W, 3) floats in [0, 1], for overlays.

    `x` is `preprocess(image, model)` where the caller has it already (it is not computed twice)."""
    x = (preprocess(image, model) if x is None else x)[0].detach().cpu()
    cfg = data_config(model)
    mean = torch.tensor(cfg["mean"]).view(-1, 1, 1)
    std = torch.tensor(cfg["std"]).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
