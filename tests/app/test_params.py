from __future__ import annotations

import gradio as gr
import pytest

from app.params import (
    coerce,
    collect_params,
    control_spec,
    controls_from_schema,
    make_component,
    params_from_query,
)

# Shapes taken from the real labs' pydantic schemas (predict, attention, attribution).
SCHEMA = {
    "additionalProperties": False,
    "properties": {
        "top_k": {
            "default": 5,
            "minimum": 1,
            "maximum": 20,
            "title": "Top K",
            "type": "integer",
            "description": "How many classes",
        },
        "tta_samples": {
            "default": 0,
            "minimum": 0,
            "maximum": 20000,
            "title": "Tta Samples",
            "type": "integer",
        },
        "seed": {"default": 0, "minimum": 0, "title": "Seed", "type": "integer"},
        "layer": {"default": 0, "minimum": 0, "maximum": 47, "title": "Layer", "type": "integer"},
        "ratio": {"default": 0.0, "minimum": 0.0, "maximum": 0.99, "title": "Ratio", "type": "number"},
        "fusion": {"default": "mean", "enum": ["mean", "max", "min"], "title": "Fusion", "type": "string"},
        "sanity": {"default": True, "title": "Sanity", "type": "boolean"},
        "mode": {"$ref": "#/$defs/Mode", "default": "b"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Note"},
        "cls": {
            "anyOf": [{"type": "integer", "minimum": -1, "maximum": 9}, {"type": "null"}],
            "default": None,
        },
    },
    "$defs": {"Mode": {"enum": ["a", "b"], "title": "Mode", "type": "string"}},
    "title": "P",
    "type": "object",
}


def test_schema_maps_to_controls_in_order() -> None:
    specs = {s.name: s for s in controls_from_schema(SCHEMA)}
    assert list(specs) == list(SCHEMA["properties"])
    assert (specs["top_k"].kind, specs["top_k"].default, specs["top_k"].step) == ("slider", 5, 1)
    assert specs["top_k"].info == "How many classes"
    assert specs["tta_samples"].kind == "number"  # too wide a range for a slider
    assert specs["seed"].kind == "number" and specs["seed"].maximum is None
    assert specs["layer"].kind == "number" and specs["layer"].maximum == 47  # an index, not a 48-stop slider
    assert specs["ratio"].kind == "slider" and specs["ratio"].step == pytest.approx(0.001)
    assert specs["fusion"].kind == "dropdown" and specs["fusion"].choices == ("mean", "max", "min")
    assert specs["sanity"].kind == "checkbox" and specs["sanity"].default is True
    assert specs["mode"].kind == "dropdown" and specs["mode"].choices == ("a", "b")  # via $ref
    assert specs["note"].kind == "textbox" and specs["note"].nullable
    assert specs["cls"].kind == "slider" and specs["cls"].nullable and specs["cls"].minimum == -1


def test_coerce_types_and_errors() -> None:
    specs = {s.name: s for s in controls_from_schema(SCHEMA)}
    assert coerce(specs["top_k"], 3.0) == 3 and isinstance(coerce(specs["top_k"], "3"), int)
    assert coerce(specs["sanity"], "false") is False
    assert coerce(specs["fusion"], "max") == "max"
    assert coerce(specs["note"], None) is None
    for name, bad in [("top_k", "2.5"), ("sanity", "maybe"), ("fusion", "median"), ("top_k", None)]:
        with pytest.raises(ValueError):
            coerce(specs[name], bad)


def test_collect_params_and_query() -> None:
    specs = controls_from_schema(SCHEMA)
    values = [4.0, 0, 7, 3, 0.5, "max", False, "a", "", None]
    params = collect_params(specs, values)
    assert (params["top_k"], params["seed"], params["layer"]) == (4, 7, 3)
    assert params["fusion"] == "max" and params["cls"] is None
    linked, notes = params_from_query(specs, {"top_k": "3", "ratio": "5", "sanity": "no", "other": "x"})
    assert linked == {"top_k": 3, "sanity": False}
    assert len(notes) == 1 and "Ratio" in notes[0]


def test_make_component_kinds() -> None:
    specs = {s.name: s for s in controls_from_schema(SCHEMA)}
    with gr.Blocks():
        assert isinstance(make_component(specs["top_k"], 5), gr.Slider)
        assert isinstance(make_component(specs["seed"], 0), gr.Number)
        assert isinstance(make_component(specs["fusion"], "mean"), gr.Dropdown)
        assert isinstance(make_component(specs["sanity"], True), gr.Checkbox)
        assert isinstance(make_component(specs["note"], None), gr.Textbox)


def test_spec_without_schema_details_still_works() -> None:
    spec = control_spec("steps", {"type": "integer"})
    assert spec.kind == "number" and spec.default == 0 and spec.label == "Steps"
