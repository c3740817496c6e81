"""Uploads (size-capped while streaming, decoded off the event loop, stored downscaled as RGB PNG
in Redis) and the example gallery."""

from __future__ import annotations

import io
from typing import Annotated

import anyio
from fastapi import APIRouter, HTTPException, Path, Request, Response
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile

from backend.api.deps import RateLimited, RedisDep, SettingsDep
from backend.api.errors import error_responses
from backend.api.guards import IMAGE_ID_PATTERN
from backend.api.middleware import MULTIPART_OVERHEAD
from backend.jobs.images import EXAMPLE_PREFIX, UnknownImage, get_image_bytes, put_image
from backend.schemas import ExampleInfo, ImageCreated

router = APIRouter(prefix="/api", tags=["images"])

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}
# Decodes at once: each may hold a full-size image in memory; more would only queue for the 2 cores.
DECODE_CONCURRENCY = 2


def decode_upload(data: bytes, max_pixels: int, max_side: int = 0) -> Image.Image:
    """Bytes -> upright RGB image, longest side at most `max_side` (0: as is), or an HTTPException.

    The pixel count is checked from the header before anything is decoded; JPEGs are decoded
    straight at a reduced scale (`draft`), so a 6000x6000 photo never exists at full size.
    """
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        if image.format not in ALLOWED_FORMATS:
            raise HTTPException(415, f"unsupported image format {image.format}; upload PNG, JPEG or WEBP")
        if image.width * image.height > max_pixels:
            raise HTTPException(413, f"image has too many pixels (limit {max_pixels:,})")
        if max_side:
            image.draft("RGB", (max_side, max_side))
        image.load()
        upright = ImageOps.exif_transpose(image)  # phone photos arrive rotated otherwise
        rgb = upright.convert("RGB")
    except HTTPException:
        raise
    except Image.DecompressionBombError:
        raise HTTPException(413, f"image has too many pixels (limit {max_pixels:,})") from None
    except UnidentifiedImageError:
        raise HTTPException(415, "the file is not an image; upload PNG, JPEG or WEBP") from None
    except Exception:  # a damaged file makes PIL raise almost anything (struct.error, EOFError, ...)
        raise HTTPException(415, "the image file is damaged or truncated; upload PNG, JPEG or WEBP") from None
    if max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # keeps the aspect ratio
    return rgb


def normalise_upload(data: bytes, max_pixels: int, max_side: int) -> tuple[bytes, int, int]:
    """Decode, bound and re-encode as PNG (runs in a worker thread)."""
    image = decode_upload(data, max_pixels, max_side)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue(), image.width, image.height


# The body is parsed by hand (after the size check), so describe it for /docs explicitly.
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
}


@router.post(
    "/images",
    status_code=201,
    response_model=ImageCreated,
    openapi_extra=_UPLOAD_BODY,
    dependencies=[RateLimited],
    responses=error_responses(400, 413, 415, 422, 429, 503),
)
async def upload_image(request: Request, settings: SettingsDep, conn: RedisDep) -> ImageCreated:
    limit = settings.max_upload_bytes
    too_large = f"file too large; the limit is {limit / (1024 * 1024):g} MB"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise HTTPException(413, too_large)
    # The BodyLimit middleware cuts a longer body (chunked too) off while it streams in.
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, 'send the image as multipart form field "file"')
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, too_large)
    if not data:
        raise HTTPException(422, "the uploaded file is empty")
    state = request.app.state
    if getattr(state, "decode_limiter", None) is None:
        state.decode_limiter = anyio.CapacityLimiter(DECODE_CONCURRENCY)  # needs the running loop
    png, width, height = await anyio.to_thread.run_sync(
        normalise_upload,
        data,
        settings.max_image_pixels,
        settings.max_image_side,
        limiter=state.decode_limiter,
    )
    image_id = await anyio.to_thread.run_sync(put_image, conn, png, settings.image_ttl_s)
    return ImageCreated(image_id=image_id, width=width, height=height)


@router.get(
    "/images/{image_id}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(404, 422, 503)},
)
def get_image(image_id: Annotated[str, Path(pattern=IMAGE_ID_PATTERN)], conn: RedisDep) -> Response:
    try:
        return Response(get_image_bytes(conn, image_id), media_type="image/png")
    except UnknownImage as exc:
        raise HTTPException(404, str(exc.args[0])) from None


@router.get("/examples", response_model=list[ExampleInfo])
def examples() -> list[ExampleInfo]:
    from backend.data.examples import list_examples

    return [
        ExampleInfo(name=e.name, title=e.title, source=e.source, image_id=f"{EXAMPLE_PREFIX}{e.name}")
        for e in list_examples()
    ]
