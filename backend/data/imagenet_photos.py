"""The photo probe set of the ImageNet model set: natural photographs that ship with installed packages.

scikit-image and scikit-learn ship a handful of photographs; five of them show something ImageNet-1k
has a class for. Each is labelled by hand with the ImageNet classes a person would accept (ImageNet-1k
has "tabby", "tiger cat" and "Egyptian cat" but no plain "cat", and no "motorcycle" at all), in the
spirit of the ReaL re-labelling (Beyer et al., 2020, arXiv 2006.07159). The label is the first class;
`ACCEPTED` is the full set, used for top-1 ("the top class is one a person would accept").

Five photos are far too few to stand for ImageNet: averages over them (mean attention distance, gates,
knock-outs) show what these models do on real photos, with no claim about ImageNet as a whole. Every
photo is centre-cropped to a square (what the models' own eval transform keeps anyway) at 384 px, enough
for the 299 px inputs of the Inception models.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from backend.data.registry import DatasetInfo, register_dataset
from backend.data.splits import Split

NAME = "imagenet-photos"
PHOTO_SIDE = 384

# photo -> (where it comes from, the ImageNet-1k classes a person would accept; the first is its label)
PHOTOS: dict[str, tuple[str, tuple[int, ...]]] = {
    "chelsea": ("Chelsea the cat, skimage.data.chelsea", (281, 282, 285)),  # tabby, tiger cat, Egyptian cat
    "coffee": ("A cup of coffee, skimage.data.coffee", (967, 968, 504)),  # espresso, cup, coffee mug
    "rocket": ("Falcon 9 launch, skimage.data.rocket", (657, 744, 812)),  # missile, projectile, shuttle
    "motorcycle": ("A motorcycle, skimage.data.stereo_motorcycle", (665, 670)),  # moped, motor scooter
    "china": ("Summer Palace, Beijing, sklearn load_sample_image('china.jpg')", (698, 663, 832)),  # palace,
    # monastery, stupa
}
ACCEPTED: dict[str, tuple[int, ...]] = {k: v[1] for k, v in PHOTOS.items()}


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """ImageNet-1k class descriptions, offline, from the copy timm ships."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def _raw(name: str) -> np.ndarray:
    if name == "china":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image("china.jpg"))
    from skimage import data

    if name == "motorcycle":
        return np.asarray(data.stereo_motorcycle()[0])
    return np.asarray(getattr(data, name)())


@lru_cache(maxsize=8)
def _rgb(name: str) -> Image.Image:
    return Image.fromarray(_raw(name)).convert("RGB")


def _square(img: Image.Image, side: int, left: int, top: int) -> np.ndarray:
    crop = img.crop((left, top, left + side, top + side))
    return np.asarray(crop.resize((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.BICUBIC))


def load_photo(name: str) -> np.ndarray:
    """One photo, centre-cropped to a square, (PHOTO_SIDE, PHOTO_SIDE, 3) uint8."""
    img = _rgb(name)
    side = min(img.size)
    return _square(img, side, (img.width - side) // 2, (img.height - side) // 2)


def load_imagenet_photos(n: int | None = None, seed: int = 0) -> Split:
    """The photos (all 5 by default) in a seeded order; past 5, seeded crops of them.

    A lab that asks for more images than there are photos gets random square crops (60–100 % of the
    shorter side, mirrored half the time) of the same photos, labelled as their photo: more samples of
    the same five scenes, not more scenes. `meta["photo"]` says which photo each image comes from and
    `meta["crop"]` whether it is such a crop.
    """
    names = list(PHOTOS)
    rng = np.random.default_rng([seed, 16])
    count = len(names) if n is None else n
    chosen = [names[i] for i in rng.permutation(len(names))]
    images = np.zeros((count, PHOTO_SIDE, PHOTO_SIDE, 3), np.uint8)
    photo = np.zeros(count, np.int64)
    for i in range(count):
        name = chosen[i % len(names)]
        if i < len(names):
            images[i] = load_photo(name)
        else:
            img = _rgb(name)
            side = int(min(img.size) * rng.uniform(0.6, 1.0))
            left, top = (
                int(rng.integers(0, img.width - side + 1)),
                int(rng.integers(0, img.height - side + 1)),
            )
            images[i] = _square(img, side, left, top)
            if rng.random() < 0.5:
                images[i] = images[i, :, ::-1]
        photo[i] = names.index(name)
    labels = np.array([ACCEPTED[names[k]][0] for k in photo], np.int64)
    return Split(
        images, labels, imagenet_class_names(), {"photo": photo, "crop": np.arange(count) >= len(names)}
    )


register_dataset(
    DatasetInfo(
        NAME,
        f"The {len(PHOTOS)} photographs from scikit-image and scikit-learn that show an ImageNet class "
        f"(centre-cropped, {PHOTO_SIDE} px): the ImageNet models' probe set; far too few to stand for "
        "ImageNet (past 5, crops of the same photos)",
        imagenet_class_names(),
        lambda split, n, seed: load_imagenet_photos(n, seed),
        splits=("test",),
        source="skimage.data, sklearn.datasets",
    )
)
