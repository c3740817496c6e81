"""`cue-conflict`: the shape of one class filled with the texture of another (Geirhos et al., ICLR 2019,
arXiv 1811.12231), built procedurally from the `shapes` renderer (METHODS §5).

The classes are the eight `shapes` classes; class k's texture is `TEXTURES[k]` (circle ↔ stripes, ...),
the alignment the `shapes` training set uses for its textured half. Besides the conflict set (every
(s, t) pair with s ≠ t) there are the cue-availability controls: `shape-only` (flat-filled silhouettes)
and `texture-only` (the texture over the whole frame). Shape bias is n_s / (n_s + n_t) over conflict
images (bethgelab/model-vs-human `ShapeBias`).
"""

from __future__ import annotations

import numpy as np

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.shapes import SHAPE_CLASSES, ShapesConfig, render
from backend.data.splits import Split, split_rng
from backend.data.textures import TEXTURES

KINDS = ("conflict", "aligned", "shape-only", "texture-only")
# Plain, low-saturation backgrounds, as in METHODS §5 ("uniform grey or low-contrast noise").
CUE_CONFIG = ShapesConfig(scale=(0.6, 0.85), min_colour_distance=0.4)


def texture_names() -> tuple[str, ...]:
    """Texture family of each class index."""
    return TEXTURES


def load_cue_conflict(
    kind: str = "conflict", per_pair: int = 10, seed: int = 0, split: str = "test"
) -> Split:
    """Images with labels = shape class and meta['texture'] = texture class.

    conflict: per_pair images for every (s, t) with s ≠ t (8·7·per_pair images);
    aligned: s = t; shape-only: flat fill (texture -1); texture-only: full-frame texture, label = t.
    """
    if kind not in KINDS:
        raise KeyError(f"unknown cue-conflict kind {kind!r}; known: {', '.join(KINDS)}")
    rng = split_rng(seed + 1000 * KINDS.index(kind), split)
    k = len(SHAPE_CLASSES)
    if kind == "conflict":
        pairs = [(s, t) for s in range(k) for t in range(k) if s != t]
    else:
        pairs = [(c, c) for c in range(k)]
    s_ids = np.repeat(np.array([p[0] for p in pairs]), per_pair)
    t_ids = np.repeat(np.array([p[1] for p in pairs]), per_pair)
    if kind == "shape-only":
        t_ids = np.full_like(s_ids, -1)
    images = render(s_ids, t_ids, rng, CUE_CONFIG, full_frame=kind == "texture-only")
    labels = t_ids if kind == "texture-only" else s_ids
    return Split(images, labels.astype(np.int64), SHAPE_CLASSES, {"shape": s_ids, "texture": t_ids})


def shape_bias(pred: np.ndarray, shape: np.ndarray, texture: np.ndarray) -> dict[str, float]:
    """Geirhos shape bias on conflict images: decisions for neither class are ignored."""
    conflict = shape != texture
    n_s = int(((pred == shape) & conflict).sum())
    n_t = int(((pred == texture) & conflict).sum())
    return {
        "shape_bias": n_s / (n_s + n_t) if n_s + n_t else float("nan"),
        "shape_decisions": n_s,
        "texture_decisions": n_t,
        "n": int(conflict.sum()),
    }


def _load_kind(kind: str, split: str, n: int | None, seed: int) -> Split:
    """n images of one kind (None: 10 per shape/texture pair), the pairs cycled evenly."""
    if n is None:
        return load_cue_conflict(kind, seed=seed, split=split)
    pairs = len(SHAPE_CLASSES) * (len(SHAPE_CLASSES) - 1 if kind == "conflict" else 1)
    full = load_cue_conflict(kind, per_pair=max(1, -(-n // pairs)), seed=seed, split=split)
    # Pair-major order: take every pair's first copies before any second copy, so a small n stays balanced.
    order = np.argsort(np.arange(len(full)) % (len(full) // pairs), kind="stable")
    return full.subset(np.sort(order[:n]))


for _kind in KINDS:
    register_dataset(
        DatasetInfo(
            "cue-conflict" if _kind == "conflict" else f"cue-conflict-{_kind}",
            f"Shapes with {_kind} shape/texture cues (label = "
            f"{'texture' if _kind == 'texture-only' else 'shape'} class; meta has both)",
            SHAPE_CLASSES,
            lambda split, n, seed, kind=_kind: _load_kind(kind, split, n, seed),  # type: ignore[misc]
            source="backend/data/cue_conflict.py",
        )
    )
