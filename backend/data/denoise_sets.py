"""16×16 grayscale datasets for the diffusion-denoiser labs (METHODS.md §6), all shipped or procedural.

- `patches16`: random 16×16 crops of scikit-image's photographs, each photo first halved (antialiased)
  so a crop holds edges and texture rather than a flat patch. Splits come from disjoint horizontal bands
  of every photo (top 70 % train, next 15 % val, last 15 % test), so no test pixel was seen in training.
- `faces16`: the 100 faces of `skimage.data.lfw_subset` (25×25) resized to 16×16, a seeded 70/15/15
  split; the training split adds each face's mirror image (140 images).
- `digits16`: scikit-learn's digits upsampled to 16×16 (the `digits` splits).
- `disks16`: procedural disks (random centre, radius, disk and background grey levels), as the
  `circle_dataset` of Kadkhodaie et al.'s repository, antialiased by 4× supersampling.

Images follow the project's `Split` contract, (N, 16, 16, 3) uint8 with the grey value in every channel;
the denoisers read one channel as [0, 1] floats (`gray_tensor`). Labels are -1 (unlabelled) except digits.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.splits import SPLITS, Split, split_rng, to_uint8

SIDE = 16
PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "coins", "moon", "rocket")
BANDS = {"train": (0.0, 0.7), "val": (0.7, 0.85), "test": (0.85, 1.0)}
DEFAULT_N = {"train": 2000, "val": 200, "test": 200}


def gray_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 1, H, W) in [0, 1] (the first channel; all three are equal)."""
    return torch.from_numpy(np.ascontiguousarray(images[..., 0])).float().div_(255.0)[:, None]


def _rgb(gray: np.ndarray) -> np.ndarray:
    """float (N, H, W) in [0, 1] -> uint8 (N, H, W, 3)."""
    return np.repeat(to_uint8(gray)[..., None], 3, axis=3)


def _unlabelled(gray: np.ndarray, **meta: np.ndarray) -> Split:
    return Split(_rgb(gray), np.full(len(gray), -1, np.int64), (), dict(meta))


def _take(n: int | None, split: str) -> int:
    return DEFAULT_N[split] if n is None else n


# --- natural-image patches -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.transform import rescale

    out = []
    for name in PHOTOS:
        img = np.asarray(getattr(data, name)(), dtype=np.float64) / 255.0  # every photo is uint8
        img = rgb2gray(img[..., :3]) if img.ndim == 3 else img
        out.append(rescale(img, 0.5, anti_aliasing=True).astype(np.float32))
    return tuple(out)


def _patches(split: str, n: int | None, seed: int) -> Split:
    rng = split_rng(seed, split)
    count = _take(n, split)
    photos = _photos()
    lo, hi = BANDS[split]
    which = rng.integers(0, len(photos), count)
    out = np.empty((count, SIDE, SIDE), np.float32)
    for k, p in enumerate(which):
        img = photos[p]
        r0, r1 = int(lo * img.shape[0]), int(hi * img.shape[0]) - SIDE  # crops stay inside the band
        r = int(rng.integers(r0, r1 + 1))
        c = int(rng.integers(0, img.shape[1] - SIDE + 1))
        out[k] = img[r : r + SIDE, c : c + SIDE]
    return _unlabelled(out, photo=which)


# --- faces -----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _faces() -> np.ndarray:
    from skimage import data

    faces = np.asarray(data.lfw_subset()[:100], dtype=np.float32)  # the first 100 are faces
    if faces.max() > 1.0:
        faces = faces / 255.0
    x = torch.from_numpy(faces)[:, None]
    small = F.interpolate(x, size=(SIDE, SIDE), mode="area")  # (100, 1, 16, 16)
    return small[:, 0].numpy().clip(0, 1)


def _faces_split(split: str, n: int | None, seed: int) -> Split:
    faces = _faces()
    order = np.random.default_rng([seed, 101]).permutation(len(faces))
    a, b = int(0.7 * len(faces)), int(0.85 * len(faces))
    idx = {"train": order[:a], "val": order[a:b], "test": order[b:]}[split]
    imgs = faces[np.sort(idx)]
    if split == "train":  # mirror images: the only augmentation that keeps a face a face
        imgs = np.concatenate([imgs, imgs[:, :, ::-1]])
    if n is not None and n < len(imgs):
        imgs = imgs[np.sort(np.random.default_rng([seed, 17]).permutation(len(imgs))[:n])]
    return _unlabelled(imgs)


# --- digits ----------------------------------------------------------------------------------------


def _digits16(split: str, n: int | None, seed: int) -> Split:
    from backend.data.digits import load_digits_split

    full = load_digits_split(split, seed=seed, size=SIDE)
    if n is None or n >= len(full):
        return full
    return full.subset(np.sort(np.random.default_rng([seed, 17]).permutation(len(full))[:n]))


# --- disks -----------------------------------------------------------------------------------------


def make_disks(count: int, rng: np.random.Generator, side: int = SIDE, supersample: int = 4) -> np.ndarray:
    """(count, side, side) float32 in [0, 1]: one disk per image on a flat background."""
    s = side * supersample
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / supersample  # pixel units of the small image
    cy, cx = rng.uniform(3, side - 3, (2, count)).astype(np.float32)
    radius = rng.uniform(2, side / 3, count).astype(np.float32)
    fg, bg = rng.uniform(0, 1, (2, count)).astype(np.float32)
    inside = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2 <= radius[
        :, None, None
    ] ** 2
    big = np.where(inside, fg[:, None, None], bg[:, None, None])
    return big.reshape(count, side, supersample, side, supersample).mean((2, 4)).astype(np.float32)


def _disks(split: str, n: int | None, seed: int) -> Split:
    return _unlabelled(make_disks(_take(n, split), split_rng(seed, split)))


for _info in (
    DatasetInfo(
        "patches16",
        "16×16 grayscale patches of scikit-image photographs (halved); splits from disjoint bands",
        (),
        _patches,
        source="skimage.data: " + ", ".join(PHOTOS),
    ),
    DatasetInfo(
        "faces16",
        "The 100 faces of scikit-image's lfw_subset at 16×16 grayscale; training split mirrored (140)",
        (),
        _faces_split,
        source="skimage.data.lfw_subset (Labeled Faces in the Wild)",
    ),
    DatasetInfo(
        "digits16",
        "scikit-learn's handwritten digits upsampled to 16×16 grayscale; stratified 70/15/15 splits",
        tuple(str(i) for i in range(10)),
        _digits16,
        source="sklearn.datasets.load_digits",
    ),
    DatasetInfo(
        "disks16",
        "Procedural 16×16 disks: random centre, radius, disk and background grey (Kadkhodaie et al.)",
        (),
        _disks,
        source="procedural (backend/data/denoise_sets.py)",
    ),
):
    register_dataset(_info)

DENOISE_DATASETS = ("patches16", "faces16", "digits16", "disks16")
assert set(SPLITS) == set(BANDS)
