"""Example images for the upload gallery and the predict demos; everything ships inside installed wheels.

- Photographs from scikit-image's `skimage.data` (astronaut, coffee, chelsea, rocket, camera, ...).
- One image per shape class from the `shapes` test split (seed 0), named `shapes-<class>`, at the zoo's
  native 32×32, so predict demos show what the shipped models were trained for.
- Cue-conflict images (a shape filled with another class's texture) for the shape-bias lab.
- A handwritten digit from scikit-learn's digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.splits import Split

PHOTOS = {
    "astronaut": "Astronaut Eileen Collins (NASA), skimage.data.astronaut",
    "coffee": "A cup of coffee (Rachel Michetti), skimage.data.coffee",
    "chelsea": "Chelsea the cat (Stéfan van der Walt), skimage.data.chelsea",
    "rocket": "Falcon 9 launch (SpaceX, CC0), skimage.data.rocket",
    "camera": "Cameraman (greyscale), skimage.data.camera",
    "coins": "Greek coins (greyscale), skimage.data.coins",
    "hubble": "Hubble deep field, skimage.data.hubble_deep_field",
    "horse": "Horse silhouette, skimage.data.horse",
}
# (shape class, texture class) of the cue-conflict examples.
CUE_EXAMPLES = (("circle", "checker"), ("cross", "stripes"), ("triangle", "dots"))
MAX_PHOTO_SIDE = 256


@dataclass(frozen=True)
class Example:
    name: str  # lowercase [a-z0-9-]
    title: str
    source: str


def list_examples() -> list[Example]:
    from backend.data.shapes import SHAPE_CLASSES

    shapes = [
        Example(f"shapes-{c}", f"Shape: {c}", "shapes test split (seed 0), 32×32, backend/data/shapes.py")
        for c in SHAPE_CLASSES
    ]
    cues = [
        Example(f"cue-conflict-{s}-{t}", f"{s} shape, {t} texture", "procedural cue-conflict, backend/data")
        for s, t in CUE_EXAMPLES
    ]
    photos = [Example(k, k.capitalize(), v) for k, v in PHOTOS.items()]
    digit = [Example("digit-3", "Handwritten 3", "scikit-learn load_digits, upsampled to 32×32")]
    return shapes + cues + photos + digit


def load_example(name: str) -> Image.Image:
    """The example as an RGB PIL image; KeyError for unknown names."""
    if name not in {e.name for e in list_examples()}:
        known = ", ".join(e.name for e in list_examples())
        raise KeyError(f"unknown example {name!r}; known: {known}")
    return _load(name).copy()


@lru_cache(maxsize=32)
def _load(name: str) -> Image.Image:
    if name.startswith("shapes-"):
        return _shape_example(name.removeprefix("shapes-"))
    if name.startswith("cue-conflict-"):
        s, t = name.removeprefix("cue-conflict-").split("-")
        return _cue_example(s, t)
    if name == "digit-3":
        from backend.data.digits import load_digits_split

        d = load_digits_split("test")
        return Image.fromarray(d.images[int(np.flatnonzero(d.labels == 3)[0])])
    from skimage import data

    arr = np.asarray(getattr(data, name if name != "hubble" else "hubble_deep_field")())
    if arr.dtype == bool:
        arr = np.where(arr, 255, 0).astype(np.uint8)
    img = Image.fromarray(arr).convert("RGB")
    img.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE), Image.Resampling.LANCZOS)
    return img


@lru_cache(maxsize=1)
def _test_split():  # type: ignore[no-untyped-def]
    from backend.data.shapes import load_shapes

    return load_shapes("test", seed=0)


def _shape_example(cls: str) -> Image.Image:
    from backend.data.shapes import SHAPE_CLASSES

    split = _test_split()
    # The first flat-filled test image of that class: shape is then the only cue.
    idx = np.flatnonzero((split.labels == SHAPE_CLASSES.index(cls)) & ~split.meta["textured"])
    return Image.fromarray(split.images[int(idx[0])])


def _cue_example(shape: str, tex: str) -> Image.Image:
    from backend.data.cue_conflict import CUE_CONFIG
    from backend.data.shapes import SHAPE_CLASSES, render
    from backend.data.textures import TEXTURES

    rng = np.random.default_rng([0, SHAPE_CLASSES.index(shape), TEXTURES.index(tex)])
    img = render(np.array([SHAPE_CLASSES.index(shape)]), np.array([TEXTURES.index(tex)]), rng, CUE_CONFIG)
    return Image.fromarray(img[0])


PHOTO_CROP = 64  # side of each photo-set crop; models resize it to their own input


def load_photo_crops(n: int | None = None, seed: int = 0) -> Split:
    """Random square crops of the example photos (the out-of-distribution set): labels are -1.

    Only 8 photographs ship with the installed packages, so crops of them are all the "natural image"
    data there is here: far too few to stand for photos in general, enough to show a shapes model
    meeting images unlike anything it was trained on.
    """
    rng = np.random.default_rng([seed, 2024])
    names = list(PHOTOS)
    count = len(names) * 8 if n is None else n
    crops = np.zeros((count, PHOTO_CROP, PHOTO_CROP, 3), np.uint8)
    source = np.zeros(count, np.int64)
    for i in range(count):
        k = i % len(names)
        img = np.asarray(_load(names[k]))
        side = int(rng.integers(min(img.shape[:2]) // 2, min(img.shape[:2]) + 1))
        y, x = (int(rng.integers(0, d - side + 1)) for d in img.shape[:2])
        crop = Image.fromarray(img[y : y + side, x : x + side]).resize((PHOTO_CROP, PHOTO_CROP))
        crops[i], source[i] = np.asarray(crop), k
    return Split(crops, np.full(count, -1, np.int64), (), {"photo": source})


register_dataset(
    DatasetInfo(
        "photos",
        f"{PHOTO_CROP}×{PHOTO_CROP} random crops of the {len(PHOTOS)} example photographs (no labels)",
        (),
        lambda split, n, seed: load_photo_crops(n, seed),
        splits=("test",),
        source="skimage.data",
    )
)
