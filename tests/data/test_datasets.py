"""Procedural datasets: deterministic by seed, right shapes and ranges, disjoint splits, balanced classes."""

from __future__ import annotations

import numpy as np
import pytest

from backend.data.cue_conflict import load_cue_conflict, shape_bias
from backend.data.digits import load_digits_split
from backend.data.dsprites import CUES, load_dsprites
from backend.data.examples import list_examples, load_example
from backend.data.shapes import SHAPE_CLASSES, load_shapes
from backend.data.splits import class_fraction
from backend.data.textures import TEXTURES, texture


def test_shapes_deterministic_and_well_formed() -> None:
    a, b = load_shapes("train", seed=3, n=200), load_shapes("train", seed=3, n=200)
    assert a.images.shape == (200, 32, 32, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert len(SHAPE_CLASSES) >= 8 and a.class_names == SHAPE_CLASSES
    assert np.bincount(a.labels, minlength=8).min() == 200 // 8  # balanced
    assert 0.3 < a.meta["textured"].mean() < 0.7
    other = load_shapes("train", seed=4, n=200)
    assert not np.array_equal(a.images, other.images)


def test_shapes_splits_differ() -> None:
    train, test = load_shapes("train", seed=0, n=100), load_shapes("test", seed=0, n=100)
    flat = {im.tobytes() for im in train.images}
    assert not any(im.tobytes() in flat for im in test.images)
    x, y = test.tensors()
    assert x.shape == (100, 3, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_textures_cover_all_families() -> None:
    rng = np.random.default_rng(0)
    for kind in TEXTURES:
        t = texture(kind, 3, 64, rng)
        assert t.shape == (3, 64, 64) and t.min() >= 0 and t.max() <= 1 and t.std() > 0.05, kind
    with pytest.raises(KeyError):
        texture("nope", 1, 8, rng)


def test_cue_conflict_sets() -> None:
    c = load_cue_conflict("conflict", per_pair=2)
    assert len(c) == 8 * 7 * 2 and (c.meta["shape"] != c.meta["texture"]).all()
    assert (c.labels == c.meta["shape"]).all()
    t = load_cue_conflict("texture-only", per_pair=2)
    assert (t.labels == t.meta["texture"]).all()
    s = load_cue_conflict("shape-only", per_pair=2)
    assert (s.meta["texture"] == -1).all()
    np.testing.assert_array_equal(load_cue_conflict("conflict", per_pair=2).images, c.images)
    sb = shape_bias(c.meta["shape"], c.meta["shape"], c.meta["texture"])
    assert sb["shape_bias"] == 1.0


def test_digits_splits() -> None:
    parts = {s: load_digits_split(s) for s in ("train", "val", "test")}
    idx = [set(p.meta["index"].tolist()) for p in parts.values()]
    assert sum(len(i) for i in idx) == 1797 and not (idx[0] & idx[2]) and not (idx[0] & idx[1])
    assert parts["train"].images.shape[1:] == (32, 32, 3)
    assert set(parts["test"].labels.tolist()) == set(range(10))
    assert len(class_fraction(parts["train"].labels, 0.1, 10)) < 0.15 * len(parts["train"])


def test_dsprites_diagonal_and_off_diagonal() -> None:
    d = load_dsprites("diagonal", n=60)
    assert d.images.shape == (60, 32, 32, 3)
    for cue in CUES:
        assert (d.meta[cue] == d.labels).all()
    off = load_dsprites("off-colour", n=60, split="test")
    assert (off.meta["colour"] == off.labels).all() and not (off.meta["shape"] == off.labels).all()
    with pytest.raises(KeyError):
        load_dsprites("off-nope")


def test_examples() -> None:
    names = [e.name for e in list_examples()]
    assert len(names) == len(set(names))
    assert all(n == n.lower() and set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") for n in names)
    assert {"astronaut", "coffee", "chelsea", "rocket", "camera"} <= set(names)
    assert any(n.startswith("cue-conflict-") for n in names)
    for n in ("shapes-circle", "astronaut", "camera", "cue-conflict-circle-checker", "digit-3"):
        img = load_example(n)
        assert img.mode == "RGB" and min(img.size) >= 8
    with pytest.raises(KeyError):
        load_example("nope")
