from __future__ import annotations

from app.state import encode_query, parse_query, with_image


def test_round_trip() -> None:
    query = encode_query(
        "predict",
        ["cnn-shapes", "deit-shapes"],
        "example-shapes-star",
        {"top_k": 3, "ratio": 0.25, "flag": True, "whole": 2.0, "none": None},
    )
    assert query == (
        "lab=predict&models=cnn-shapes,deit-shapes&image=example-shapes-star"
        "&top_k=3&ratio=0.25&flag=true&whole=2"
    )
    state = parse_query(query)
    assert state.lab == "predict" and state.models == ("cnn-shapes", "deit-shapes")
    assert state.image == "example-shapes-star"
    assert state.params == {"top_k": "3", "ratio": "0.25", "flag": "true", "whole": "2"}


def test_missing_and_empty_values() -> None:
    state = parse_query("")
    assert state.lab is None and state.models is None and state.image is None and state.params == {}
    assert parse_query({"models": ""}).models == ()  # "no models" differs from "not in the link"
    assert encode_query("sample-efficiency", None, None, {}) == "lab=sample-efficiency"


def test_with_image_replaces_only_the_image() -> None:
    query = "lab=predict&models=a,b&image=old&top_k=3"
    assert with_image(query, "new") == "lab=predict&models=a,b&image=new&top_k=3"
    assert with_image(query, None) == "lab=predict&models=a,b&top_k=3"
    assert with_image("", "example-x") == "image=example-x"
