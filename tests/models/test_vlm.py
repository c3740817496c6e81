"""The shipped vision-language model: its tokenizer and masks, and that it really carries the prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.data.clevr_lite import QA, balanced_questions, load_clevr_lite
from backend.data.splits import to_tensor
from backend.labs.vlm_eval import Scorer, prompt
from backend.models import create_model, get_entry
from backend.models.vlm import EOS, PAD, SEP, UNK, TinyVLM, decode, encode, token_id, unknown_words
from backend.train.vlm import IGNORE, batch_tensors


def test_tokenizer_round_trip_and_unknown_words() -> None:
    assert decode(encode("Is there a red Ball?")) == "is there a red ball ?"
    assert encode("what colour is the sphere?") == encode("what color is the ball?")
    assert unknown_words("is there a purple dog?") == ["purple", "dog"] and UNK in encode("a dog")


def test_training_targets_are_the_answer_only() -> None:
    inputs, targets = batch_tensors([QA("is there a red ball?", "yes", "exists")])
    q = encode("is there a red ball?")
    assert inputs[0].tolist() == [*q, SEP, token_id("yes")]
    assert targets[0].tolist() == [IGNORE] * len(q) + [token_id("yes"), EOS]


def test_decoder_is_causal_and_no_image_is_one_token() -> None:
    torch.manual_seed(0)
    m = TinyVLM().eval()
    x, tok = torch.rand(2, 3, 32, 32), torch.randint(4, 30, (2, 9))
    with torch.no_grad():
        short, long = m(x, tok[:, :5]), m(x, tok)
        torch.testing.assert_close(short, long[:, :5])  # later tokens never leak backwards
        none = m(None, tok)
        torch.testing.assert_close(none, m(x, tok, torch.zeros(2, dtype=torch.bool)))
        assert (none - long).abs().max() > 1e-3  # the image matters
        padded = m(x, torch.cat([tok, torch.full((2, 3), PAD)], 1))
        torch.testing.assert_close(padded[:, :9], long)


@pytest.fixture(scope="module")
def shipped() -> Scorer:
    entry = get_entry("vlm-clevr")
    assert entry.weights_path is not None and entry.weights_path.is_file(), "vlm-clevr weights not shipped"
    return Scorer(create_model("vlm-clevr"))


def test_shipped_model_says_yes_without_the_image(shipped: Scorer) -> None:
    # The balanced split's yes/no questions are half yes; without the image the model can only answer from
    # its training prior (80 % yes), so its no-image yes-ratio must be well above the truth's.
    scenes = load_clevr_lite("test", 240, 0)
    qas = [q for q in balanced_questions(scenes.meta["objects"], 0) if q.kind in ("exists", "exists_shape")]
    truth = np.mean([q.answer == "yes" for q in qas])
    assert abs(truth - 0.5) < 0.05
    logits = shipped.next_logits(None, [prompt(q.question) for q in qas])
    says_yes = logits[:, token_id("yes")] > logits[:, token_id("no")]
    assert says_yes.mean() > truth + 0.1, (says_yes.mean(), truth)


def test_shipped_model_carries_the_colour_prior_without_the_image(shipped: Scorer) -> None:
    # In training, balls were red and cones yellow 90 % of the time: with no image, "is there a red ball?"
    # must get more "yes" than the same question with any other colour.
    def yes_minus_no(colour: str, shape: str) -> float:
        z = shipped.next_logits(None, [prompt(f"is there a {colour} {shape}?")])[0]
        return float(z[token_id("yes")] - z[token_id("no")])

    for shape, prior in (("ball", "red"), ("cone", "yellow")):
        others = [c for c in ("red", "green", "blue", "yellow") if c != prior]
        assert yes_minus_no(prior, shape) > max(yes_minus_no(c, shape) for c in others), shape


def test_shipped_model_reads_the_image(shipped: Scorer) -> None:
    scenes = load_clevr_lite("test", 240, 0)
    qas = balanced_questions(scenes.meta["objects"], 0)
    rows = [i for i, q in enumerate(qas) if q.kind == "color"]
    logits = shipped.next_logits(to_tensor(scenes.images[rows]), [prompt(qas[i].question) for i in rows])
    colour = [qas[i].answer for i in rows]
    ids = [token_id(c) for c in ("red", "green", "blue", "yellow")]
    picked = [("red", "green", "blue", "yellow")[j] for j in logits[:, ids].argmax(1)]
    acc = np.mean([a == b for a, b in zip(picked, colour, strict=True)])
    assert acc > 0.5, acc  # chance is 0.25, and the prior colour is right only 25 % of the time here
