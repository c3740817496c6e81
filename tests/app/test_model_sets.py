"""The picker keeps the ImageNet model set apart from the shapes zoo (issue 16), without a browser."""

from __future__ import annotations

import gradio as gr

from app.client import LabSpec, ModelCard
from app.lab_page import build_lab_page, model_groups, set_choices, set_defaults, set_note
from app.state import parse_query

REASON = "its ImageNet weights are not in the local Hugging Face cache (/x)"
ZOO = [
    ModelCard(name="cnn-shapes", family="cnn", task="classification", class_names=["circle", "ring"]),
    ModelCard(name="convit-shapes", family="convit", task="classification", class_names=["circle", "ring"]),
]
PHOTO = [
    ModelCard(
        name="convit_tiny.fb_in1k",
        family="convit",
        task="classification",
        model_set="imagenet",
        class_names=["tench", "goldfish"],
    ),
    ModelCard(
        name="resnet50.a1_in1k",
        family="cnn",
        task="classification",
        model_set="imagenet",
        class_names=["tench", "goldfish"],
        available=False,
        unavailable_reason=REASON,
    ),
]
ATTRIBUTION = LabSpec(
    name="attribution",
    title="Attribution",
    model_tasks=["classification"],
    max_models=4,
    default_models=["cnn-shapes"],
    params_schema={
        "properties": {"target_class": {"type": "integer", "minimum": -1, "maximum": 100000, "default": -1}}
    },
)


def test_sets_are_grouped_zoo_first_and_unavailable_models_say_why() -> None:
    groups = model_groups([*PHOTO, *ZOO])
    assert list(groups) == ["zoo", "imagenet"] and [m.name for m in groups["imagenet"]] == [
        p.name for p in PHOTO
    ]
    assert set_choices(PHOTO)[1] == ("resnet50.a1_in1k (not available here)", "resnet50.a1_in1k")
    assert REASON in set_note("imagenet", PHOTO) and "not with the shapes zoo" in set_note("imagenet", PHOTO)
    # Switching to the ImageNet set ticks a model that can run, never the zoo's defaults.
    assert set_defaults(ATTRIBUTION, PHOTO) == ["convit_tiny.fb_in1k"]


def test_the_page_offers_one_set_at_a_time() -> None:
    with gr.Blocks():
        image_id, url_box = gr.State(None), gr.Textbox()
        with gr.Tabs():
            page = build_lab_page(ATTRIBUTION, [*ZOO, *PHOTO], None, image_id, url_box)  # type: ignore[arg-type]
    assert page.set_radio is not None and page.models is not None
    assert page.set_radio.value == "zoo"
    assert [v for _, v in page.models.choices] == ["cnn-shapes", "convit-shapes"]  # no ImageNet model here
    assert [label for label, _ in page.controls[0].choices][1:] == ["circle", "ring"]
    by_name = {m.name: m for m in [*ZOO, *PHOTO]}
    # A shared link naming models of both sets: the first one's set, and only its models.
    updates = page.url_updates(parse_query("lab=attribution&models=convit_tiny.fb_in1k,cnn-shapes"), by_name)
    assert updates[page.set_radio]["value"] == "imagenet"
    assert updates[page.models]["value"] == ["convit_tiny.fb_in1k"]


def test_a_zoo_only_server_shows_no_set_switch() -> None:
    with gr.Blocks():
        image_id, url_box = gr.State(None), gr.Textbox()
        with gr.Tabs():
            page = build_lab_page(ATTRIBUTION, ZOO, None, image_id, url_box)  # type: ignore[arg-type]
    assert page.set_radio is None and [v for _, v in page.models.choices] == ["cnn-shapes", "convit-shapes"]  # type: ignore[union-attr]
