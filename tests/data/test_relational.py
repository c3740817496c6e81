"""The relational same/different-colour dataset: labels say what is drawn, shapes are far apart, seeds
repeat."""

from __future__ import annotations

import numpy as np

from backend.data.relational import MIN_DISTANCE, PALETTE, RELATIONAL_CLASSES, load_relational


def test_labels_match_the_drawn_colours_and_classes_are_balanced() -> None:
    s = load_relational("train", seed=3, n=400)
    assert s.images.shape == (400, 32, 32, 3) and s.images.dtype == np.uint8
    assert s.class_names == RELATIONAL_CLASSES == ("different", "same")
    colours = s.meta["colours"]
    assert np.array_equal(s.labels, (colours[:, 0] == colours[:, 1]).astype(np.int64))
    assert int(s.labels.sum()) == 200
    # every "different" pair of colours occurs, and the shapes say nothing about the label
    diff = {tuple(k) for k, y in zip(colours, s.labels, strict=True) if y == 0}
    assert len(diff) == len(PALETTE) * (len(PALETTE) - 1)
    kinds = s.meta["shapes"]
    same_kind = kinds[:, 0] == kinds[:, 1]
    assert abs(same_kind[s.labels == 1].mean() - same_kind[s.labels == 0].mean()) < 0.15
    # The colour at each shape's centre pixel is its palette colour (up to anti-aliasing and noise).
    img = s.images.astype(float) / 255
    c = s.meta["centres"]
    for j in range(2):
        col = np.clip(((c[:, j, 0] + 1) * 16).astype(int), 0, 31)
        row = np.clip(((c[:, j, 1] + 1) * 16).astype(int), 0, 31)
        centre = img[np.arange(len(img)), row, col]
        assert (np.abs(centre - PALETTE[colours[:, j]]).max(1) < 0.1).mean() > 0.9


def test_the_two_shapes_are_far_apart_and_both_visible() -> None:
    s = load_relational("test", seed=0, n=200)
    c = s.meta["centres"]
    dist_px = np.linalg.norm(c[:, 0] - c[:, 1], axis=1) * 16  # half-width = 16 px
    assert dist_px.min() >= MIN_DISTANCE * 16 - 1e-4 >= 14
    # both shapes change pixels near their centres: the image differs from its background there
    img = s.images.astype(float)
    bg = np.median(np.concatenate([img[:, 0], img[:, -1]], 1), axis=1)  # (n, 3)
    for j in range(2):
        col = np.clip(((c[:, j, 0] + 1) * 16).astype(int), 0, 31)
        row = np.clip(((c[:, j, 1] + 1) * 16).astype(int), 0, 31)
        centre = img[np.arange(len(img)), row, col]
        assert (np.abs(centre - bg).sum(1) > 30).mean() > 0.9


def test_same_seed_same_images() -> None:
    a, b = load_relational("val", seed=5, n=16), load_relational("val", seed=5, n=16)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, load_relational("val", seed=6, n=16).images)
