"""Every registered dataset loads through `load_dataset`, deterministically, at the size asked for."""

from __future__ import annotations

import numpy as np
import pytest

from backend.data import UnknownDataset, list_datasets, load_dataset
from backend.data.shapes import load_shapes

NAMES = [d.name for d in list_datasets()]


def test_the_project_datasets_are_registered() -> None:
    assert {"shapes", "cue-conflict", "digits", "dsprites-lite", "photos"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_dataset_is_deterministic_and_sized(name: str) -> None:
    info = next(d for d in list_datasets() if d.name == name)
    split = info.splits[-1]
    # b is generated afresh (the registry keeps recent splits, so a second load_dataset would be a's copy)
    a, b = load_dataset(name, split, n=24, seed=3), info.loader(split, 24, 3)
    # A finite split (e.g. the 16×16 faces of lfw_subset) gives all it has when asked for more: with N
    # images, 24 asked give min(24, N), as 25 asked give min(25, N). (Asking 10,000 cost minutes.)
    assert len(a) == min(24, len(load_dataset(name, split, n=25, seed=3)))
    assert len(a) > 0 and a.images.dtype == np.uint8 and a.images.shape[-1] == 3
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    if info.class_names:
        assert a.labels.min() >= 0 and a.labels.max() < len(info.class_names)
    else:
        assert (a.labels == -1).all()


def test_registry_reads_the_same_images_as_the_module() -> None:
    np.testing.assert_array_equal(
        load_dataset("shapes", "val", n=16, seed=2).images, load_shapes("val", 2, 16).images
    )


def test_cue_conflict_subsets_stay_balanced() -> None:
    s = load_dataset("cue-conflict", "test", n=56)  # one image for each of the 8 × 7 conflicting pairs
    pairs = set(zip(s.meta["shape"].tolist(), s.meta["texture"].tolist(), strict=True))
    assert len(pairs) == 56 and all(a != b for a, b in pairs)


def test_unknown_dataset_and_split_are_clear_errors() -> None:
    with pytest.raises(UnknownDataset, match="known datasets: .*shapes"):
        load_dataset("nope")
    with pytest.raises(ValueError, match="no split 'train'"):
        load_dataset("photos", "train")


def test_kept_splits_are_read_only_and_keyed_by_every_argument() -> None:
    a = load_dataset("shapes", "val", n=16, seed=5)
    again = load_dataset("shapes", "val", n=16, seed=5)
    assert again.images is a.images  # kept, not rendered again
    with pytest.raises(ValueError, match="read-only"):
        a.images[0, 0, 0, 0] = 1  # one caller cannot change the images every other caller gets
    other_seed = load_dataset("shapes", "val", n=16, seed=6)
    other_split = load_dataset("shapes", "test", n=16, seed=5)
    assert not np.array_equal(other_seed.images, a.images)
    assert not np.array_equal(other_split.images, a.images)
    assert len(load_dataset("shapes", "val", n=8, seed=5)) == 8
