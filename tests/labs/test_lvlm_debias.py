"""lvlm-debias: partial results token by token, post-hoc and VDD numbers checked against a direct
computation with the model, and bad input answered with a 422."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.data.clevr_lite import load_clevr_lite
from backend.data.splits import to_tensor
from backend.jobs.execute import run_lab
from backend.main import create_app
from backend.models import create_model
from backend.models.vlm import SEP, VOCAB, encode, token_id

QUESTION = "is there a red ball?"


@pytest.fixture(scope="module")
def result() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    partials: list[dict[str, Any]] = []
    out = run_lab(
        "lvlm-debias", ["vlm-clevr"], None, {"eval_scenes": 24, "scene_seed": 3}, text=QUESTION,
        publish=partials.append,
    )  # fmt: skip
    return out, partials


def _logits(model: torch.nn.Module, image: torch.Tensor | None, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(image, torch.tensor([ids]))[0, -1].numpy()


def test_posthoc_and_vdd_match_a_direct_computation(result: Any) -> None:
    out, _ = result
    m = out["metrics"]
    model = create_model("vlm-clevr")
    image = to_tensor(load_clevr_lite("test", 1, 3).images)
    ids = [*encode(QUESTION), SEP]
    lg, lnone = _logits(model, image, ids), _logits(model, None, ids)
    yes, no = token_id("yes"), token_id("no")

    def restricted(z: np.ndarray) -> np.ndarray:  # the two label tokens, renormalised (both are top-10)
        e = np.exp(z - z.max())
        pair = np.array([e[yes], e[no]])
        return pair / pair.sum()

    p, p_cf = restricted(lg), restricted(lnone) + 1e-4
    q = (p / p_cf) / (p / p_cf).sum()
    got = m["posthoc"]
    np.testing.assert_allclose([got["p"]["yes"], got["p"]["no"]], p, rtol=1e-4)
    np.testing.assert_allclose([got["q"]["yes"], got["q"]["no"]], q, rtol=1e-4)
    # VDD's first token: among tokens with p ≥ 0.1 · max p, argmax of 2ℓ − ℓ̃ (α = 1).
    probs = np.exp(lg - lg.max())
    score = np.where(probs >= 0.1 * probs.max(), 2 * lg - lnone, -np.inf)
    assert m["debiased_answer"].split()[0] == VOCAB[int(np.argmax(score))]
    assert m["plain_answer"].split()[0] == VOCAB[int(np.argmax(lg))]


def test_decoding_is_published_token_by_token(result: Any) -> None:
    out, partials = result
    assert len(partials) >= 2
    first = partials[0]["metrics"]
    assert "posthoc" in first and "plain_answer" not in first  # post-hoc arrives before any token
    # Each later partial adds a token to at least one of the two answers, and the last matches the end.
    assert [p["step"] for p in partials] == list(range(1, len(partials) + 1))
    assert partials[-1]["metrics"]["debiased_answer"] == out["metrics"]["debiased_answer"]
    assert (
        len(partials) - 1
        == max(len(a.split()) for a in (out["metrics"]["plain_answer"], out["metrics"]["debiased_answer"]))
        + 1
    )


def test_balanced_metrics_cover_the_three_rules(result: Any) -> None:
    bal = result[0]["metrics"]["balanced"]
    for rule in ("plain", "posthoc", "vdd"):
        for key in ("accuracy", "yes_ratio", "hallucination_rate"):
            assert 0.0 <= bal[rule][key] <= 1.0
    assert "caption_chair_i" in bal["vdd"] and "caption_chair_i" not in bal["posthoc"]
    assert len(result[0]["figures"]) == 6


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), mount_ui=False)) as c:
        yield c


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"params": {"alpha": -1}}, "alpha"),
        ({"params": {"content_free": "zeros"}}, "content_free"),
        ({"text": ""}, "question"),
        ({"text": "is there a red ball? " * 10}, "80 at most"),
    ],
)
def test_bad_input_is_a_422(client: TestClient, body: dict[str, Any], needle: str) -> None:
    r = client.post(
        "/api/jobs", json={"lab": "lvlm-debias", "models": ["vlm-clevr"], "text": QUESTION, **body}
    )
    assert r.status_code == 422, r.text
    assert needle in r.text.lower()
