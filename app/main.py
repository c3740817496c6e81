"""The Gradio dashboard: `build_ui(api_base)` -> gr.Blocks, and `mount_kwargs()` for css/theme.

The page is a client of the HTTP API only (this package never imports torch). Because the UI is
mounted inside the same FastAPI app that serves the API, the API is not up yet when `build_ui` runs;
so the page fetches the catalogue (labs, models, examples) when a browser loads it, and `gr.render`
builds one tab per lab from that answer. A lab registered in the backend appears after a reload,
with no UI code to write.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from app.client import ApiClient, ApiError, Example, LabSpec, ModelCard
from app.image_panel import ImagePanel, build_image_panel, gallery_items, initial_image, wire_image_panel
from app.lab_page import LabPage, build_lab_page
from app.state import UrlState, parse_query

log = logging.getLogger("biaslab.ui")

ASSETS = Path(__file__).resolve().parent.parent / "frontend_assets"
CSS_PATH = ASSETS / "css" / "app.css"

# Alt text for every Plotly chart: Plotly keeps the figure's layout on its div, and the backend puts the
# alt text in layout.meta.alt (app.figures.to_figure fills it from the title when missing).
HEAD_JS = """
<script>
(() => {
  // Figures keep part of their design width (3/4 on a phone, 1/2 elsewhere); a narrower column
  // scrolls them sideways instead of squeezing panels and tick labels into each other.
  const fit = (gd) => {
    const meta = (gd.layout && gd.layout.meta) || {};
    const min = Math.round((window.innerWidth <= 700 ? 0.75 : 0.5) * (meta.min_width || 0));
    if (!min || !gd.parentElement || gd.dataset.minWidth === String(min)) return;
    gd.dataset.minWidth = String(min);
    gd.style.minWidth = min + "px";
    gd.parentElement.style.overflowX = "auto";
    const P = window.Plotly;
    setTimeout(() => (P ? P.Plots.resize(gd) : window.dispatchEvent(new Event("resize"))), 0);
  };
  const label = () => document.querySelectorAll(".js-plotly-plot").forEach((gd) => {
    const layout = gd.layout || {};
    const title = layout.title && (layout.title.text || layout.title);
    const alt = (layout.meta && layout.meta.alt) || (typeof title === "string" ? title : "") || "chart";
    if (gd.getAttribute("aria-label") !== alt) {
      gd.setAttribute("role", "figure");  // not "img": the chart holds buttons (axe: nested-interactive)
      gd.setAttribute("aria-label", alt);
    }
    fit(gd);
  });
  // Gallery thumbnails: Gradio names them "Thumbnail 3 of 20"; the accessible name must contain the
  // visible caption (WCAG 2.5.3), and the image's alt would only repeat it.
  const thumbs = () => document.querySelectorAll("#example-gallery button.thumbnail-item").forEach((b) => {
    const caption = b.querySelector(".caption-label");
    const text = caption ? caption.textContent.trim() : "";
    if (text && b.getAttribute("aria-label") !== text) {
      b.setAttribute("aria-label", text);
      const img = b.querySelector("img");
      if (img) img.setAttribute("alt", "");
    }
  });
  window.addEventListener("resize", () => document.querySelectorAll(".js-plotly-plot").forEach(fit));
  new MutationObserver(() => { label(); thumbs(); })
    .observe(document.documentElement, {childList: true, subtree: true});
})();
</script>
"""


GUIDE_HTML = (
    '<p class="bl-guide" role="note"><span class="bl-step">1</span> Pick an image'
    '<span class="bl-sep" aria-hidden="true">·</span><span class="bl-step">2</span> Pick models'
    '<span class="bl-sep" aria-hidden="true">·</span><span class="bl-step">3</span> Press Run</p>'
)
# Projector mode: a class on <body> (larger type, thicker chart lines in app.css); Plotly re-measures
# its charts on a window resize.
PROJECTOR_JS = """
(on) => {
  document.body.classList.toggle("bl-projector", !!on);
  setTimeout(() => window.dispatchEvent(new Event("resize")), 50);
  return [];
}
"""


@dataclass
class Catalog:
    """What one page load needs from the API, or the error that prevented it."""

    labs: list[LabSpec] = field(default_factory=list)
    models: list[ModelCard] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    url: UrlState = field(default_factory=UrlState)


def fetch_catalog(client: ApiClient, query: str = "") -> Catalog:
    url = parse_query(query)
    try:
        return Catalog(client.labs(), client.models(), client.examples(), client.health(), url=url)
    except ApiError as exc:
        return Catalog(error=str(exc), url=url)


def theme() -> gr.themes.Base:
    """Large type and strong contrast for projectors; the colours match frontend_assets/css/app.css."""
    return gr.themes.Soft(
        primary_hue=gr.themes.colors.blue,
        secondary_hue=gr.themes.colors.orange,
        neutral_hue=gr.themes.colors.slate,
        text_size=gr.themes.sizes.text_lg,
        radius_size=gr.themes.sizes.radius_sm,
        # System fonts only: the dashboard must work offline (no Google Fonts request).
        font=["system-ui", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    ).set(
        body_text_color="#111827",
        body_text_color_subdued="#374151",  # help text: 10:1 on white (the default grey was 2.6:1)
        block_info_text_color="#374151",
        block_label_text_color="#111827",  # field labels: dark on light (was blue on blue, 3.0:1)
        block_label_background_fill="#f3f4f6",
        block_title_text_color="#111827",
        checkbox_label_text_color="#111827",
        input_placeholder_color="#4b5563",
        block_label_text_size="*text_md",
        checkbox_label_background_fill_selected="#0b5cad",  # white on it: 6.9:1 (the default was 3.7:1)
        checkbox_label_text_color_selected="#ffffff",
        checkbox_background_color_selected="#0b5cad",
        link_text_color="#0b5cad",
        link_text_color_visited="#5b21b6",
        link_text_color_hover="#084a8c",
        link_text_color_active="#084a8c",
        button_primary_background_fill="#0b5cad",
        button_primary_background_fill_hover="#084a8c",
        button_primary_text_color="#ffffff",
    )


def mount_kwargs() -> dict[str, Any]:
    """css/theme/head for `gr.mount_gradio_app(...)` or `Blocks.launch(...)` (Gradio 6 takes them there)."""
    return {"theme": theme(), "css_paths": [CSS_PATH], "head": HEAD_JS}


def launch_kwargs() -> dict[str, Any]:
    return mount_kwargs()


def _header(health: dict[str, Any], api_base: str) -> str:
    if not health:
        return ""
    workers = health.get("workers")
    queue = health.get("queue", "?")
    parts = [f"API {api_base}", f"queue: {queue}", f"workers: {workers}"]
    return html.escape(" · ".join(parts))


def load_catalog(api_base: str, asgi_app: Any = None, wait_s: float = 0.0) -> Catalog:
    """Labs and models at build time: over HTTP, or through `asgi_app` in-process.

    `asgi_app` is the FastAPI app the UI will be mounted in: its server is not listening yet while the
    UI is built, so requests go through Starlette's in-process transport (still real HTTP semantics,
    and no backend import here).
    """
    deadline = time.monotonic() + wait_s
    while True:
        client = _catalog_client(api_base, asgi_app)
        try:
            return Catalog(labs=client.labs(), models=client.models())
        except ApiError as exc:
            if time.monotonic() >= deadline:
                return Catalog(error=str(exc))
            time.sleep(0.5)
        finally:
            client.close()


def build_ui(
    api_base: str,
    *,
    asgi_app: Any = None,
    catalog: Catalog | None = None,
    client: ApiClient | None = None,
) -> gr.Blocks:
    """The whole dashboard. `api_base` is where the Gradio server process reaches the HTTP API.

    One tab per lab from `GET /api/labs`, read when the UI is built (pass `asgi_app`, the FastAPI app
    the UI is mounted in, so that works before its server listens). When the API cannot be read at
    build time, the tabs are built in the browser session on page load instead (`gr.render`).
    """
    client = client or ApiClient(api_base)
    if catalog is None:
        catalog = load_catalog(api_base, asgi_app)
    static = catalog.error is None
    with gr.Blocks(title="Inductive Bias Lab", analytics_enabled=False) as demo:
        with gr.Row(elem_id="bl-header", equal_height=False):
            gr.Markdown("# Inductive Bias Lab", elem_id="bl-title")
            gr.HTML(GUIDE_HTML, elem_id="bl-guide")
            projector = gr.Checkbox(
                label="Projector mode",
                value=False,
                elem_id="bl-projector",
                scale=0,
                min_width=220,
            )
        projector.change(None, projector, None, js=PROJECTOR_JS)
        panel = build_image_panel()
        # The page's query string; the browser's address bar follows it (see app.state).
        url_box = gr.Textbox(visible="hidden", elem_id="bl-url-state", label="URL state")
        boot = gr.State(None)
        pages: list[LabPage] = []
        tabs: gr.Tabs | None = None
        if static:
            tabs, pages = _lab_tabs(catalog, client, panel, url_box, None)

        server_line = gr.Markdown(elem_id="bl-server", elem_classes=["bl-server"])
        by_name = {m.name: m for m in catalog.models}
        url_outputs: list[Any] = [*([tabs] if tabs is not None else []), *_page_outputs(pages)]

        def on_load(request: gr.Request) -> Any:
            query = str(request.query_params) if request is not None else ""
            url = parse_query(query)
            try:
                examples = client.examples()
                health = client.health()
            except ApiError as exc:
                fail = {panel.note: panel_error(str(exc)), url_box: query}
                return {**fail, boot: None if static else Catalog(error=str(exc), url=url)}
            path, image_id, note = initial_image(client, examples, url.image)
            updates: dict[Any, Any] = {
                panel.gallery: gallery_items(client, examples),
                panel.examples: examples,
                panel.image: path,
                panel.image_id: image_id,
                panel.note: note,
                url_box: query,
                server_line: _header(health, api_base),
            }
            if static:
                names = [p.lab.name for p in pages]
                if tabs is not None and url.lab in names:
                    updates[tabs] = gr.Tabs(selected=url.lab)
                for page in pages:
                    updates.update(page.url_updates(url, by_name))
            else:
                updates[boot] = fetch_catalog(client, query)
            return updates

        load_outputs = [boot, panel.gallery, panel.examples, panel.image, panel.image_id, panel.note]
        demo.load(on_load, None, [*load_outputs, url_box, server_line, *url_outputs], show_progress="hidden")
        wire_image_panel(panel, client, url_box)

        if not static:

            @gr.render(inputs=[boot], triggers=[boot.change], show_progress="hidden")
            def render_labs(late: Catalog | None) -> None:
                if late is None:
                    return
                if late.error:
                    gr.HTML(
                        '<div class="bl-progress bl-error" role="alert"><strong>The lab server is not '
                        f"answering:</strong> {html.escape(late.error)}. Reload the page to try again.</div>"
                    )
                    return
                _lab_tabs(late, client, panel, url_box, late.url)

    demo.queue(default_concurrency_limit=4)
    return demo


def _page_outputs(pages: list[LabPage]) -> list[Any]:
    out: list[Any] = []
    for page in pages:
        out += [c for c in (page.models, page.cards) if c is not None]
        out += [*page.controls, page.status]
    return out


# Teaching order: the easiest question first ("what does each model answer?"), then where attention
# looks, what the gates decide, where the evidence is, and what priors are worth in data. Labs not
# listed follow in the server's order.
TEACHING_ORDER = ("predict", "attention", "gating", "attribution", "sample-efficiency")


def teaching_order(labs: list[LabSpec]) -> list[LabSpec]:
    rank = {name: i for i, name in enumerate(TEACHING_ORDER)}
    return sorted(labs, key=lambda lab: (rank.get(lab.name, len(rank)), labs.index(lab)))


def _lab_tabs(
    catalog: Catalog, client: ApiClient, panel: ImagePanel, url_box: gr.Textbox, url: UrlState | None
) -> tuple[gr.Tabs | None, list[LabPage]]:
    if not catalog.labs:
        gr.Markdown("No labs are registered on this server.")
        return None, []
    labs = teaching_order(catalog.labs)
    names = [lab.name for lab in labs]
    selected = url.lab if url is not None and url.lab in names else names[0]
    with gr.Tabs(selected=selected, elem_id="lab-tabs") as tabs:
        pages = [build_lab_page(lab, catalog.models, client, panel.image_id, url_box, url) for lab in labs]
    return tabs, pages


def _catalog_client(api_base: str, asgi_app: Any) -> ApiClient:
    if asgi_app is None:
        return ApiClient(api_base, timeout=5.0)
    from starlette.testclient import TestClient

    # Starlette's in-process transport: a real request/response cycle through the app, no socket.
    # (Not entered as a context manager, so the app's lifespan, i.e. its workers, is not started.)
    http: Any = TestClient(asgi_app, base_url=api_base)
    return ApiClient(api_base, http=http)


def panel_error(message: str) -> str:
    from app.image_panel import note_html

    return note_html(f"The lab server is not answering: {message}", "error")
