"""Image storage shared by API and workers: uploads live in Redis (so any worker on any machine can
read them), examples are resolved from the project's data by name."""

from __future__ import annotations

import hashlib
import io

import redis
from PIL import Image

from backend.jobs.keys import image_key

EXAMPLE_PREFIX = "example-"


class UnknownImage(KeyError):
    pass


def put_image(conn: redis.Redis, png: bytes, ttl_s: int) -> str:
    """Store normalised PNG bytes; the id is content-addressed so re-uploads are free."""
    image_id = hashlib.sha256(png).hexdigest()[:24]
    conn.set(image_key(image_id), png, ex=ttl_s)
    return image_id


def get_image_bytes(conn: redis.Redis, image_id: str) -> bytes:
    if image_id.startswith(EXAMPLE_PREFIX):
        from backend.data.examples import load_example

        try:
            image = load_example(image_id.removeprefix(EXAMPLE_PREFIX))
        except KeyError:
            raise UnknownImage(f"unknown example image {image_id!r}") from None
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    data = conn.get(image_key(image_id))
    if data is None:
        raise UnknownImage(f"unknown or expired image {image_id!r}; upload it again with POST /api/images")
    assert isinstance(data, bytes)
    return data


def image_exists(conn: redis.Redis, image_id: str) -> bool:
    if image_id.startswith(EXAMPLE_PREFIX):
        # By name: rendering an example can mean generating a dataset split (seconds).
        from backend.data.examples import list_examples

        return image_id.removeprefix(EXAMPLE_PREFIX) in {e.name for e in list_examples()}
    return bool(conn.exists(image_key(image_id)))


def load_image(conn: redis.Redis, image_id: str) -> Image.Image:
    return Image.open(io.BytesIO(get_image_bytes(conn, image_id))).convert("RGB")
