"""The shared image panel: upload, webcam, paste and the example gallery; one current image for all tabs.

Every image goes through the API (`POST /api/images`), which validates and normalises it (RGB, EXIF
orientation, size caps); the panel then shows the API's copy, so what you see is what the models get.
The current image lives in one `gr.State` (its `image_id`), read by every lab's Run button.
"""

from __future__ import annotations

import hashlib
import html
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app.client import ApiClient, ApiError, Example
from app.state import REPLACE_URL_JS, with_image

log = logging.getLogger("biaslab.ui")

CACHE_DIR = Path(tempfile.gettempdir()) / "biaslab-ui" / "images"


@dataclass
class ImagePanel:
    image: gr.Image
    upload: gr.UploadButton
    gallery: gr.Gallery
    note: gr.HTML
    image_id: gr.State
    examples: gr.State


def note_html(message: str, kind: str = "info") -> str:
    role = ' role="alert"' if kind == "error" else ' role="status"'
    return f'<div class="bl-note bl-note-{kind}"{role}>{html.escape(message)}</div>'


def cached_image(client: ApiClient, image_id: str) -> str:
    """The API's PNG of an image, as a local file Gradio can serve (examples are cached for good)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in image_id)[:80]
    digest = hashlib.sha1(image_id.encode()).hexdigest()[:8]
    path = CACHE_DIR / f"{safe}-{digest}.png"
    if not path.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(client.image_bytes(image_id))
        tmp.replace(path)
    return str(path)


def short_caption(title: str) -> str:
    """Captions fit under a 90 px thumbnail: "Shape: circle" -> "circle", "x shape, y texture" -> "x / y"."""
    if title.lower().startswith("shape: "):
        return title[7:]
    if " shape, " in title and title.endswith(" texture"):
        shape, texture = title.split(" shape, ", 1)
        return f"{shape} / {texture.removesuffix(' texture')}"
    return title


def gallery_items(client: ApiClient, examples: list[Example]) -> list[tuple[str, str]]:
    items = []
    for example in examples:
        try:
            items.append((cached_image(client, example.image_id), short_caption(example.title)))
        except ApiError as exc:
            log.warning("example %s unavailable: %s", example.name, exc)
    return items


def example_title(examples: list[Example], image_id: str) -> str | None:
    return next((e.title for e in examples if e.image_id == image_id), None)


def build_image_panel() -> ImagePanel:
    """Layout only; `wire_image_panel` attaches the handlers once the client exists."""
    with gr.Row(elem_id="image-panel", equal_height=False):
        with gr.Column(scale=1, min_width=170, elem_id="current-image-col"):
            # Upload first: the box must not open on "Click to Access Webcam" (the webcam is one click away).
            image = gr.Image(
                label="Image",
                sources=["upload", "clipboard", "webcam"],
                type="filepath",
                height=170,
                elem_id="current-image",
                buttons=["fullscreen"],
                placeholder="Drop an image file here to upload",  # = the drop zone's aria-label (axe)
            )
            upload = gr.UploadButton(
                "Upload your own image",
                file_count="single",
                size="md",
                variant="secondary",
                elem_id="upload-image",
            )
        with gr.Column(scale=5, min_width=300):
            gallery = gr.Gallery(
                label="Examples: click one",
                columns=13,
                height="auto",
                allow_preview=False,
                buttons=[],
                object_fit="contain",
                elem_id="example-gallery",
            )
            note = gr.HTML(note_html("No image yet: pick an example."), elem_id="image-note")
    return ImagePanel(image, upload, gallery, note, gr.State(None), gr.State([]))


def wire_image_panel(panel: ImagePanel, client: ApiClient, url_box: gr.Textbox) -> None:
    def pick_example(examples: list[Example], query: str, evt: gr.SelectData) -> Any:
        example = examples[evt.index] if 0 <= evt.index < len(examples) else None
        if example is None:
            return (
                gr.skip(),
                gr.skip(),
                note_html("That example is gone; reload the page.", "error"),
                gr.skip(),
            )
        try:
            path = cached_image(client, example.image_id)
        except ApiError as exc:
            return gr.skip(), gr.skip(), note_html(f"Could not load the example: {exc}", "error"), gr.skip()
        message = f"Current image: {example.title} ({example.source})"
        return path, example.image_id, note_html(message), with_image(query, example.image_id)

    def upload_file(path: str | None, query: str) -> Any:
        return _upload(path, query, "the uploaded file")

    def new_capture(path: str | None, query: str) -> Any:
        if path is None:  # the user cleared the image
            return (
                gr.skip(),
                None,
                note_html("No image: pick an example or upload one."),
                with_image(query, None),
            )
        return _upload(path, query, "the captured image")

    def _upload(path: str | None, query: str, what: str) -> Any:
        if not path:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            data = Path(path).read_bytes()
            image_id = client.upload_image(data, filename=Path(path).name)
            shown = cached_image(client, image_id)
        except ApiError as exc:
            gr.Warning(f"Upload rejected: {exc}")
            return gr.skip(), gr.skip(), note_html(f"Upload rejected: {exc}", "error"), gr.skip()
        except OSError as exc:
            return (
                gr.skip(),
                gr.skip(),
                note_html(f"Could not read {what}: {exc.strerror}", "error"),
                gr.skip(),
            )
        return shown, image_id, note_html(f"Current image: {what}."), with_image(query, image_id)

    outputs = [panel.image, panel.image_id, panel.note, url_box]
    panel.gallery.select(pick_example, [panel.examples, url_box], outputs, show_progress="hidden").then(
        None, [url_box], None, js=REPLACE_URL_JS
    )
    panel.upload.upload(upload_file, [panel.upload, url_box], outputs, show_progress="minimal").then(
        None, [url_box], None, js=REPLACE_URL_JS
    )
    panel.image.input(new_capture, [panel.image, url_box], outputs, show_progress="minimal").then(
        None, [url_box], None, js=REPLACE_URL_JS
    )


def initial_image(client: ApiClient, examples: list[Example], image_id: str | None) -> tuple[Any, Any, str]:
    """(image path, image_id, note) for the image named in a shared link, or an empty panel."""
    if not image_id:
        return None, None, note_html("No image yet: pick an example, upload a file, paste or use the webcam.")
    try:
        path = cached_image(client, image_id)
    except ApiError as exc:
        return None, None, note_html(f"The linked image {image_id!r} is not available ({exc}).", "error")
    title = example_title(examples, image_id) or image_id
    return path, image_id, note_html(f"Current image: {title}")
