"""`cue-texture-easy`: a training set where texture is the *available* cue and shape the harder one.

On `shapes` the shape is large, high-contrast and always there, so every model trained on it is almost
purely shape-biased on the cue-conflict set. ImageNet CNNs are texture-biased (Geirhos et al., ICLR 2019,
arXiv 1811.12231); Hermann et al. (ICLR 2024, arXiv 2310.16228) explain such preferences by
*availability*: a model prefers the cue that is easier to extract (larger, higher contrast), not only the
more predictive one. Here the shape always predicts the class and the texture never contradicts it:

- texture: in 80 % of the images class c's texture family (`TEXTURES[c]`) fills the whole frame, two
  colours well apart (high contrast, the largest possible area); the other 20 % are one flat colour;
- shape: class c's silhouette, small (radius 0.35-0.65 of the half-width, `shapes` uses 0.45-0.85)
  and drawn only as a faint brightness offset (0.1-0.25 in [0, 1] units) on top of the texture;
- in half the images a flat-coloured bar hides part of the texture and of the shape.

So texture, where present, is the easy cue; shape is the reliable but harder one, learnable on its own
from the flat 20 % (where nothing contradicts either cue). Two earlier pilots (300 steps, 10k images)
with the texture on every image and no flat bars left shape-only accuracy near chance (13-22 %): the
shape was hardly learned at all, so the bias figure would have meant little (issue 11 requires both cues
usable).

The test-time probes are the ordinary cue-conflict set and its shape-only / texture-only controls
(`cue_conflict.py`), which the models never saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.shapes import (
    SHAPE_CLASSES,
    SUPERSAMPLE,
    colours_apart,
    random_colours,
    shape_masks,
    textures_for,
)
from backend.data.splits import Split, split_rng, to_uint8
from backend.data.textures import _grid


@dataclass(frozen=True)
class TextureEasyConfig:
    size: int = 32
    scale: tuple[float, float] = (0.35, 0.65)  # shape radius / half-width; shapes uses 0.45-0.85
    offset: tuple[float, float] = (0.1, 0.25)  # shape brightness offset; the texture's contrast is >= 0.5
    texture_fraction: float = 0.8  # images with their class texture over the frame; the rest are flat
    occlude_fraction: float = 0.5  # images with a flat-coloured bar over texture and shape
    bar_width: tuple[float, float] = (0.15, 0.35)  # bar half-width in [-1, 1] image units
    noise: float = 0.02


def occluding_bars(n: int, ss: int, rng: np.random.Generator, cfg: TextureEasyConfig) -> np.ndarray:
    """(n, ss, ss) masks, 1 on a random bar (all zeros for the images left unoccluded)."""
    x, y = _grid(ss)
    phi = rng.uniform(0, np.pi, n).astype(np.float32)[:, None, None]
    offset = rng.uniform(-0.4, 0.4, n).astype(np.float32)[:, None, None]
    half = rng.uniform(*cfg.bar_width, n).astype(np.float32)[:, None, None]
    bar = np.abs(x * np.cos(phi) + y * np.sin(phi) - offset) <= half
    on = (rng.random(n) < cfg.occlude_fraction)[:, None, None]
    return (bar & on).astype(np.float32)


def render_texture_easy(
    labels: np.ndarray,
    textured: np.ndarray,
    rng: np.random.Generator,
    cfg: TextureEasyConfig = TextureEasyConfig(),
) -> np.ndarray:
    """uint8 (n, size, size, 3): the class texture over the whole frame (where `textured`, else a flat
    colour), a faint small class shape on top, and maybe a flat bar hiding part of both."""
    n, ss = len(labels), cfg.size * SUPERSAMPLE
    pattern = textures_for(np.where(textured, labels, -1), ss, rng)[..., None]  # -1: zeros (flat)
    col_a = random_colours(n, rng)
    col_b = colours_apart(col_a, 0.5, rng)
    img = col_a[:, None, None] * (1 - pattern) + col_b[:, None, None] * pattern
    mask = shape_masks(labels, rng, cfg.size, cfg.scale)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    delta = (sign * rng.uniform(*cfg.offset, n).astype(np.float32))[:, None, None, None]
    img = img + mask[..., None] * delta
    bar = occluding_bars(n, ss, rng, cfg)[..., None]
    img = img * (1 - bar) + bar * random_colours(n, rng)[:, None, None]
    img = img.reshape(n, cfg.size, SUPERSAMPLE, cfg.size, SUPERSAMPLE, 3).mean(axis=(2, 4))
    img = img + cfg.noise * rng.standard_normal(img.shape).astype(np.float32)
    return to_uint8(img)


def load_texture_easy(
    split: str,
    seed: int = 0,
    n: int | None = None,
    cfg: TextureEasyConfig = TextureEasyConfig(),
    chunk: int = 2048,
) -> Split:
    """One split: balanced shuffled labels; meta['texture'] the texture class (-1 where flat)."""
    n = {"train": 20000, "val": 2000, "test": 2000}[split] if n is None else n
    rng = split_rng(seed + 77, split)
    k = len(SHAPE_CLASSES)
    labels = rng.permutation(np.arange(n) % k)
    textured = rng.random(n) < cfg.texture_fraction
    parts = [
        render_texture_easy(labels[i : i + chunk], textured[i : i + chunk], rng, cfg)
        for i in range(0, n, chunk)
    ]
    images = np.concatenate(parts) if parts else np.zeros((0, 32, 32, 3), np.uint8)
    texture = np.where(textured, labels, -1)
    return Split(images, labels.astype(np.int64), SHAPE_CLASSES, {"textured": textured, "texture": texture})


register_dataset(
    DatasetInfo(
        "cue-texture-easy",
        "Full-frame class texture (easy, high contrast) with a small, faint, partly occluded class shape: "
        "both cues predictive, texture the more available one",
        SHAPE_CLASSES,
        lambda split, n, seed: load_texture_easy(split, seed=seed, n=n),
        source="backend/data/texture_easy.py",
    )
)
