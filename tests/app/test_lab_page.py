"""Page logic without a browser: model choice, cards, status HTML, and building the Blocks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from app.client import LabSpec, ModelCard
from app.lab_page import (
    build_lab_page,
    eligible_models,
    error_html,
    initial_models,
    model_cap,
    model_cards_markdown,
    progress_html,
)
from app.main import Catalog, build_ui
from app.state import parse_query

MODELS = [
    ModelCard(
        name="cnn-shapes",
        family="cnn",
        task="classification",
        params=310_000,
        card={"test_accuracy": 0.99, "ece": 0.01},
        description="A small ResNet.",
    ),
    ModelCard(name="deit-shapes", family="vit", task="classification", params=1_200_000),
    ModelCard(
        name="convit-shapes",
        family="convit",
        task="classification",
        card={
            "test_accuracy": 0.998,
            "seeds": {"summary": {"n": 3, "test_accuracy": {"mean": 0.99, "std": 0.012}}},
        },
    ),
    ModelCard(name="denoiser", family="unet", task="denoising"),
]
ATTENTION = LabSpec(
    name="attention",
    title="Attention",
    model_tasks=["classification"],
    model_families=["vit", "convit"],
    max_models=3,
    default_models=["convit-shapes", "deit-shapes"],
    params_schema={"properties": {"layer": {"type": "integer", "minimum": 0, "maximum": 11, "default": 0}}},
)
ATTRIBUTION = LabSpec(name="attribution", title="Attribution", model_tasks=["classification"], max_models=5)
CURVES = LabSpec(name="sample-efficiency", title="Curves", needs_image=False, max_models=0)


def test_eligibility_and_caps() -> None:
    assert [m.name for m in eligible_models(ATTENTION, MODELS)] == ["deit-shapes", "convit-shapes"]
    assert [m.name for m in eligible_models(ATTRIBUTION, MODELS)] == [
        "cnn-shapes",
        "deit-shapes",
        "convit-shapes",
    ]
    # The API's limit is the UI's: it used to cap at 4 while attribution takes 5.
    assert model_cap(ATTRIBUTION) == ATTRIBUTION.max_models == 5 and model_cap(CURVES) == 0


def test_initial_models_from_defaults_and_links() -> None:
    eligible = eligible_models(ATTENTION, MODELS)
    assert initial_models(ATTENTION, eligible, None) == (["convit-shapes", "deit-shapes"], [])
    chosen, notes = initial_models(ATTENTION, eligible, ("deit-shapes", "cnn-shapes"))
    assert chosen == ["deit-shapes"] and "cnn-shapes" in notes[0]
    # nothing usable in the link: fall back to the defaults; no defaults at all: the first eligible model
    assert initial_models(ATTENTION, eligible, ("nope",))[0] == ["convit-shapes", "deit-shapes"]
    assert initial_models(ATTRIBUTION, eligible_models(ATTRIBUTION, MODELS), None)[0] == ["cnn-shapes"]


def test_cards_and_status_html() -> None:
    cards = model_cards_markdown(["cnn-shapes", "deit-shapes"], {m.name: m for m in MODELS})
    assert "| **cnn-shapes** | cnn | 310 k | 99.0% |" in cards
    assert "| **deit-shapes** | vit | 1.20 M | – |" in cards
    # Where more seeds were trained, the card shows their spread beside the shipped model's accuracy.
    spread = model_cards_markdown(["convit-shapes"], {m.name: m for m in MODELS})
    assert "| 99.8% (3 seeds: 99.0% ± 1.2%) |" in spread
    assert "A small ResNet." in cards and "ECE 0.010" in cards
    bar = progress_html("started", 0.4, "running <cnn>")
    assert 'data-status="started"' in bar and 'value="0.400"' in bar and "&lt;cnn&gt;" in bar
    assert 'role="alert"' in error_html("boom")


def test_url_updates_apply_to_their_own_lab_only() -> None:
    with gr.Blocks():
        image_id, url_box = gr.State(None), gr.Textbox()
        with gr.Tabs():
            page = build_lab_page(ATTENTION, MODELS, None, image_id, url_box)  # type: ignore[arg-type]
    updates = page.url_updates(parse_query("lab=attention&models=deit-shapes&layer=3"), {})
    assert updates[page.models]["value"] == ["deit-shapes"]
    assert updates[page.controls[0]]["value"] == 3
    assert page.url_updates(parse_query("lab=predict&layer=3"), {}) == {}
    bad = page.url_updates(parse_query("lab=attention&layer=99"), {})
    assert page.controls[0] not in bad and "outside" in bad[page.status]


def test_build_ui_static_and_fallback() -> None:
    static = build_ui(
        "http://127.0.0.1:9", catalog=Catalog(labs=[ATTENTION, ATTRIBUTION, CURVES], models=MODELS)
    )
    tabs = [b for b in static.blocks.values() if isinstance(b, gr.Tab)]
    assert [t.id for t in tabs] == ["attention", "attribution", "sample-efficiency"]
    # API unreachable while building: the tabs are built per page load instead (gr.render)
    late = build_ui("http://127.0.0.1:9")
    assert not [b for b in late.blocks.values() if isinstance(b, gr.Tab)]


def test_jobs_carry_the_students_address_for_the_rate_limit() -> None:
    """The UI forwards who asked (the X-Forwarded-For chain it received, plus its peer), and the API,
    trusting loopback and a front proxy, charges the student rather than the UI server."""
    import gradio as gr
    from starlette.requests import Request

    from app.lab_page import forwarded_chain
    from backend.api.ratelimit import client_key

    def request(peer: str, xff: str | None) -> gr.Request:
        headers = [(b"x-forwarded-for", xff.encode())] if xff else []
        scope = {"type": "http", "headers": headers, "client": (peer, 5000), "method": "POST", "path": "/"}
        return gr.Request(request=Request(scope))

    trusted = ["127.0.0.1", "10.0.0.0/8"]
    direct = forwarded_chain(request("198.51.100.4", None))
    assert direct == "198.51.100.4"
    assert client_key("127.0.0.1", direct, trusted) == "198.51.100.4"
    # Behind a Space's proxy (10.x): the student is the hop the proxy added, not the proxy, and not
    # what the browser claimed.
    proxied = forwarded_chain(request("10.0.0.7", "6.6.6.6, 203.0.113.5"))
    assert proxied == "6.6.6.6, 203.0.113.5, 10.0.0.7"
    assert client_key("127.0.0.1", proxied, trusted) == "203.0.113.5"
    assert forwarded_chain(None) is None


def _run_handler(demo: gr.Blocks) -> tuple[Any, list[Any]]:
    """The Run button's handler and the components it reads, as wired by build_lab_page."""
    fn = next(f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "run_job")
    return fn.fn, fn.inputs


def test_a_short_job_is_drawn_in_the_first_update_and_a_long_one_shows_progress_first(
    live_server: Any,
) -> None:
    """Each page update costs the page server a rebuild of every output the Run event names, so a job
    that ends within the first wait is drawn at once; a longer one first shows its progress and Cancel.
    The real handler, against the real embedded server and its trained models."""
    from starlette.requests import Request

    from app.client import ApiClient

    client = ApiClient(live_server.url)
    lab = next(spec for spec in client.labs() if spec.name == "predict")
    with gr.Blocks() as demo:
        image_id, url_box = gr.State(None), gr.Textbox()
        with gr.Tabs():
            page = build_lab_page(lab, client.models(), client, image_id, url_box)
    handler, inputs = _run_handler(demo)
    scope = {"type": "http", "headers": [], "client": ("127.0.0.1", 5000), "method": "POST", "path": "/"}
    request = gr.Request(request=Request(scope))

    def run(**params: Any) -> Iterator[dict[Any, Any]]:
        values = [c.value for c in inputs]
        values[0] = "example-shapes-circle"  # the image_id State
        for spec, control in zip(page.specs, page.controls, strict=True):
            if spec.name in params:
                values[inputs.index(control)] = params[spec.name]
        if page.models is not None:
            values[inputs.index(page.models)] = ["cnn-shapes"]
        updates: Iterator[dict[Any, Any]] = handler(request, *values)
        return updates

    list(run(tta_samples=0))  # the process's first job loads the model (and may fit the OOD reference)
    short = list(run(tta_samples=0))
    assert page.plots[0] in short[0] and page.plots[1] in short[0]  # the result, with no update before it
    # the job's own line: an identical line would not be redrawn (or announced) after an earlier run
    assert "Done" in short[0][page.status] and 'data-job="' in short[0][page.status]
    assert len(short) == 2  # then the downloads, with Run back

    # The most shifted copies one job may ask for: seconds of work on any CPU, far over the first wait.
    long = run(tta_samples=20_000)
    first = next(long)
    assert page.plots[0] not in first and first[page.cancel]["interactive"] is True
    assert first[page.run]["interactive"] is False and 'data-status="started"' in first[page.status]
    job = next(value for key, value in first.items() if isinstance(key, gr.State) and isinstance(value, str))
    long.close()  # the page went away: the handler cancels its job, freeing the worker
    assert client.job(job, wait=20).status == "cancelled"
