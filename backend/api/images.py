"""Uploads (validated, normalised to RGB PNG, stored in Redis) and the example gallery."""

from __future__ import annotations

import io
import warnings

from fastapi import APIRouter, HTTPException, Request, Response
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile

from backend.api.deps import RedisDep, SettingsDep
from backend.jobs.images import EXAMPLE_PREFIX, UnknownImage, get_image_bytes, put_image
from backend.schemas import ExampleInfo, ImageCreated

router = APIRouter(prefix="/api", tags=["images"])

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}
MULTIPART_OVERHEAD = 64 * 1024


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> upright RGB image, or an HTTPException a person can act on."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise HTTPException(415, f"unsupported image format {image.format}; upload PNG, JPEG or WEBP")
            image.load()
    except (UnidentifiedImageError, OSError):
        raise HTTPException(415, "the file is not an image; upload PNG, JPEG or WEBP") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise HTTPException(413, f"image has too many pixels (limit {max_pixels:,})") from None
    upright = ImageOps.exif_transpose(image)  # phone photos arrive rotated otherwise
    return upright.convert("RGB")


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
    responses={413: {"description": "too large"}, 415: {"description": "not a PNG/JPEG/WEBP image"}},
)
async def upload_image(request: Request, settings: SettingsDep, conn: RedisDep) -> ImageCreated:
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise HTTPException(413, f"file too large; the limit is {limit // (1024 * 1024)} MB")
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, 'send the image as multipart form field "file"')
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"file too large; the limit is {limit // (1024 * 1024)} MB")
    if not data:
        raise HTTPException(422, "the uploaded file is empty")
    image = decode_upload(data, settings.max_image_pixels)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    image_id = put_image(conn, buf.getvalue(), settings.image_ttl_s)
    return ImageCreated(image_id=image_id, width=image.width, height=image.height)


@router.get("/images/{image_id}", responses={200: {"content": {"image/png": {}}}})
def get_image(image_id: str, conn: RedisDep) -> Response:
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
