"""Parameters that multiply work are bounded together, with a 422 that names the limit, in every caller."""

from __future__ import annotations

import pytest

from backend.jobs.validate import JobRequestError, validate_job

CASES = [
    ("predict", ["cnn-shapes", "deit-shapes"], {"tta_samples": 10_001}, "augmentations × models"),
    ("attribution", ["cnn-shapes"], {"ig_steps": 512, "references": 9}, "IG steps × references"),
    ("attribution", ["cnn-shapes"], {"probe_size": 64, "seeds": 20, "sanity_ig_steps": 8}, "seeds"),
    ("attention", ["convit-shapes", "deit-shapes", "convit-relational"], {"probe_size": 256}, "probe images"),
]


@pytest.mark.parametrize(("lab", "models", "params", "fragment"), CASES)
def test_too_much_work_is_refused_with_the_limit_named(
    lab: str, models: list[str], params: dict, fragment: str
) -> None:
    with pytest.raises(JobRequestError) as err:
        validate_job(lab, models, params, has_image=True)
    assert err.value.status == 422 and fragment in str(err.value) and "at most" in str(err.value)


@pytest.mark.parametrize(("lab", "models", "params", "fragment"), CASES)
def test_just_inside_the_limit_is_accepted(lab: str, models: list[str], params: dict, fragment: str) -> None:
    smaller = {k: (v // 2 if isinstance(v, int) and v > 1 else v) for k, v in params.items()}
    validate_job(lab, models[:1], smaller, has_image=True)  # half the work on fewer models passes
