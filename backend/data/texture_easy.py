"""`cue-texture-easy`: a training set where texture is the *available* cue and shape the harder one.

On `shapes` the shape is large, high-contrast and always there, so every model trained on it is almost
purely shape-biased on the cue-conflict set. ImageNet CNNs are texture-biased (Geirhos et al., ICLR 2019,
arXiv 1811.12231); Hermann et al. (ICLR 2024, arXiv 2310.16228) explain such preferences by
*availability*: a model prefers the cue that is easier to extract, not only the more predictive one.
Here the shape always predicts the class and the texture never contradicts it:

- texture: in 80 % of the images class c's texture family (`TEXTURES[c]`), two colours well apart, fills a
  large random ellipse (semi-axes 0.55-0.95 of the half-width) on a flat background; in the other 20 %
  the ellipse is one flat colour. The ellipse's outline is random, so it carries no class information;
- shape: class c's silhouette (radius 0.5-0.85 of the half-width, as large as the conflict set's) drawn
  only as a brightness offset of 0.3-0.5 on top of whatever is there, so inside the ellipse its outline
  is broken up by the texture's own edges (camouflage): the cue is there, but harder to extract;
- in half the images a flat-coloured bar hides part of the texture and of the shape.

Why an ellipse on a flat background and not texture over the whole frame: the conflict set puts the
texture inside a silhouette on a flat background. With full-frame texture, training images showed a flat
background only when there was no texture, where shape was the only cue, so a CNN learned "flat
background: decide by shape" (measured, 400 steps: shape bias 0.76, 56 % of conflict decisions for
neither class). With the ellipse the shipped `cnn-texture-easy` (1,200 steps) measures shape bias 0.12,
shape-only 34 %, texture-only 50 % (chance 12.5 %; shape-bias lab, 1,120 conflict images). Pilots of the
same recipe with a fainter shape offset (0.2-0.4) left shape-only at 19 % (one seed each, all reported in
the issue 11 note).

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
    scale: tuple[float, float] = (0.5, 0.85)  # shape radius / half-width; the conflict set uses 0.6-0.85
    offset: tuple[float, float] = (0.3, 0.5)  # shape brightness offset, drawn over the texture
    region: tuple[float, float] = (0.55, 0.95)  # semi-axes of the textured ellipse / half-width
    texture_fraction: float = 0.8  # images whose ellipse holds their class texture; the rest are flat
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


def ellipses(n: int, ss: int, rng: np.random.Generator, cfg: TextureEasyConfig) -> np.ndarray:
    """(n, ss, ss) masks of random ellipses near the centre (random axes and angle): the textured region."""
    x, y = _grid(ss)
    a, b = (rng.uniform(*cfg.region, n).astype(np.float32)[:, None, None] for _ in range(2))
    phi = rng.uniform(0, np.pi, n).astype(np.float32)[:, None, None]
    cx, cy = (rng.uniform(-0.2, 0.2, n).astype(np.float32)[:, None, None] for _ in range(2))
    u = ((x - cx) * np.cos(phi) + (y - cy) * np.sin(phi)) / a
    v = (-(x - cx) * np.sin(phi) + (y - cy) * np.cos(phi)) / b
    return (u * u + v * v <= 1).astype(np.float32)


def render_texture_easy(
    labels: np.ndarray,
    textured: np.ndarray,
    rng: np.random.Generator,
    cfg: TextureEasyConfig = TextureEasyConfig(),
) -> np.ndarray:
    """uint8 (n, size, size, 3): a large ellipse holding the class texture (where `textured`, else a flat
    colour) on a flat background, the class shape as a brightness offset on top, and maybe a flat bar
    hiding part of both."""
    n, ss = len(labels), cfg.size * SUPERSAMPLE
    pattern = textures_for(np.where(textured, labels, -1), ss, rng)[..., None]  # -1: zeros (flat)
    col_a = random_colours(n, rng)
    col_b = colours_apart(col_a, 0.5, rng)
    fill = col_a[:, None, None] * (1 - pattern) + col_b[:, None, None] * pattern
    region = ellipses(n, ss, rng, cfg)[..., None]
    background = colours_apart((col_a + col_b) / 2, 0.4, rng)[:, None, None]  # as the conflict set's
    img = region * fill + (1 - region) * background
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
        "Class texture on a large ellipse (easy, high contrast) with the class shape camouflaged over it and "
        "partly occluded: both cues predictive, texture the more available one",
        SHAPE_CLASSES,
        lambda split, n, seed: load_texture_easy(split, seed=seed, n=n),
        source="backend/data/texture_easy.py",
    )
)
