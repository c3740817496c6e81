"""What only the combination of settings and models shows is refused with a 422 naming the field:
work that multiplies past one job's budget, and layers or heads a chosen model does not have."""

from __future__ import annotations

import pytest

from backend.jobs.validate import JobRequestError, validate_job

CASES = [
    ("predict", ["cnn-shapes", "deit-shapes"], {"tta_samples": 10_001}, "augmentations × models"),
    ("attribution", ["cnn-shapes"], {"ig_steps": 512, "references": 9}, "IG steps × references"),
    ("attribution", ["cnn-shapes"], {"probe_size": 64, "seeds": 20, "sanity_ig_steps": 8}, "seeds"),
    ("attention", ["convit-shapes", "deit-shapes", "convit-relational"], {"probe_size": 256}, "probe images"),
    ("attention", ["convit-shapes"], {"layer": 11}, "layer: convit-shapes has layers 0–5"),
    ("attention", ["deit-shapes"], {"head": 6}, "head: deit-shapes has heads 0–3"),
    ("attention", ["convit-shapes"], {"query_row": 9}, "patch grid has 8 rows"),
    ("gating", ["convit-shapes"], {"counterfactual": "layer", "cf_layer": 5}, "GPSA) layers 0–3"),
    ("gating", ["convit-shapes"], {"counterfactual": "head", "cf_head": 8}, "heads 0–3"),
]


@pytest.mark.parametrize(("lab", "models", "params", "fragment"), CASES)
def test_too_much_work_is_refused_with_the_limit_named(
    lab: str, models: list[str], params: dict, fragment: str
) -> None:
    with pytest.raises(JobRequestError) as err:
        validate_job(lab, models, params, has_image=True)
    assert err.value.status == 422 and fragment in str(err.value)


@pytest.mark.parametrize(
    ("lab", "models", "params", "fragment"),
    [c for c in CASES if "work" in c[3] or "×" in c[3] or c[3] in ("seeds", "probe images")],
)
def test_just_inside_the_limit_is_accepted(lab: str, models: list[str], params: dict, fragment: str) -> None:
    smaller = {k: (v // 2 if isinstance(v, int) and v > 1 else v) for k, v in params.items()}
    validate_job(lab, models[:1], smaller, has_image=True)  # half the work on fewer models passes


def test_the_last_layer_and_head_a_model_has_are_accepted() -> None:
    validate_job("attention", ["convit-shapes"], {"layer": 5, "head": 3, "query_row": 7}, has_image=True)
    validate_job("gating", ["convit-shapes"], {"counterfactual": "head", "cf_layer": 3, "cf_head": 3})
