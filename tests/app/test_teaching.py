"""The teaching parts of the page without a browser: quiz blocks, labels, class dropdowns, limits from
the chosen models, teaching order, stale marks and notices."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.client import LabSpec, ModelCard
from app.figures import notice_of
from app.image_panel import short_caption
from app.lab_page import friendly, without_notice
from app.lesson import feedback_html, parse_quiz, split_lesson
from app.main import teaching_order
from app.params import check_limits, control_spec, limits_for, plain_label, with_class_names

LESSONS = Path(__file__).resolve().parents[2] / "frontend_assets" / "lessons"

BLOCK = """Intro text.

```quiz
question: Which model is most confident?
- The CNN
- [x] The ViT
- Neither
reveal: The ViT's bar is longest.
  It is also wrong.
```

After."""


def test_quiz_block_is_parsed_and_cut_from_the_lesson() -> None:
    text, quiz = split_lesson(BLOCK)
    assert quiz is not None
    assert quiz.question == "Which model is most confident?"
    assert quiz.options == ("The CNN", "The ViT", "Neither") and quiz.correct == 1
    assert quiz.reveal == "The ViT's bar is longest. It is also wrong."
    assert "```" not in text and text.startswith("Intro text.") and text.endswith("After.")
    assert split_lesson("No quiz here.") == ("No quiz here.", None)


@pytest.mark.parametrize(
    "body, reason",
    [
        ("- a\n- [x] b\n", "question"),
        ("question: q\n- [x] only\n", "two options"),
        ("question: q\n- a\n- b\n", "exactly one"),
        ("question: q\n- [x] a\n- [x] b\n", "exactly one"),
    ],
)
def test_malformed_quiz_is_refused_with_the_reason(body: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_quiz(body)
    text, quiz = split_lesson(f"```quiz\n{body}```\n")
    assert quiz is None and "```quiz" in text  # left visible rather than half-parsed


def test_shipped_lessons_of_this_issue_have_a_quiz() -> None:
    for name in ("predict", "sample-efficiency"):
        _, quiz = split_lesson((LESSONS / f"{name}.md").read_text())
        assert quiz is not None and quiz.reveal, name


def test_feedback_compares_the_answer_with_the_data() -> None:
    _, quiz = split_lesson(BLOCK)
    assert quiz is not None
    assert 'data-quiz="right"' in feedback_html(quiz, "The ViT")
    wrong = feedback_html(quiz, "The CNN")
    assert 'data-quiz="wrong"' in wrong and "The CNN" in wrong and "The ViT" in wrong
    assert 'data-quiz="skipped"' in feedback_html(quiz, None)
    assert "longest" in wrong


def test_plain_labels_replace_generated_titles() -> None:
    assert plain_label("tta_samples", "Tta Samples") == "Shifted copies to average (0 = off)"
    assert plain_label("ig_steps", "Ig Steps") == "Integration steps (Integrated Gradients)"
    assert plain_label("top_k", "How many classes") == "How many classes"  # an explicit title wins
    assert plain_label("new_knob", "New Knob") == "New knob"


def test_target_class_becomes_a_dropdown_of_names() -> None:
    prop = {"type": "integer", "minimum": -1, "maximum": 100000, "default": -1, "title": "Target Class"}
    spec = with_class_names(control_spec("target_class", prop), ["circle", "square", "arrow"])
    assert spec.kind == "dropdown" and spec.label == "Class to explain"
    assert spec.choices == (("each model's own prediction", -1), ("circle", 0), ("square", 1), ("arrow", 2))
    assert spec.default == -1 and spec.maximum == 2
    other = control_spec("top_k", {"type": "integer", "minimum": 1, "maximum": 20})
    assert with_class_names(other, ["a"]) is other


ARCH = {
    "convit-shapes": {"layers": 6, "heads": 4, "gpsa_layers": 4, "patch_grid": [8, 8]},
    "big-vit": {"layers": 12, "heads": 6, "gpsa_layers": 0, "patch_grid": [14, 14]},
    "cnn": None,
}


def test_limits_come_from_the_chosen_models_and_bad_values_are_refused() -> None:
    layer = control_spec("layer", {"type": "integer", "minimum": 0, "maximum": 47})
    head = control_spec("head", {"type": "integer", "minimum": 0, "maximum": 63})
    assert limits_for(layer, ARCH) == (5, "convit-shapes")  # the smallest chosen model bounds the field
    assert limits_for(head, {"big-vit": ARCH["big-vit"]}) == (5, "big-vit")
    assert limits_for(layer, {"cnn": None}) is None  # unknown: the API's bounds stand
    problems = check_limits([layer, head], {"layer": 5, "head": 4}, ARCH)
    assert problems == ["Attention head: 4 is out of range; convit-shapes has 0–3"]
    assert check_limits([layer, head], {"layer": 5, "head": 3}, ARCH) == []


def test_teaching_order_puts_predict_first() -> None:
    names = ["attention", "attribution", "gating", "sample-efficiency", "predict", "shape-bias"]
    labs = [LabSpec(name=n, title=n) for n in names]
    assert [lab.name for lab in teaching_order(labs)] == [
        "predict", "attention", "gating", "attribution", "sample-efficiency", "shape-bias"
    ]  # fmt: skip


def test_captions_notices_and_plain_errors() -> None:
    assert short_caption("Shape: circle") == "circle"
    assert short_caption("cross shape, stripes texture") == "cross / stripes"
    assert short_caption("Chelsea") == "Chelsea"
    assert notice_of({"layout": {"meta": {"notice": " Look left. "}}}) == "Look left."
    assert notice_of({"layout": {}}) == ""
    assert "POST" not in friendly("image 'x' expired; upload it again with POST /api/images")
    metrics = {"ood": {"sentence": "Out of distribution: odd."}}
    assert without_notice("Out of distribution: odd. cnn says ring (99%).", metrics) == "cnn says ring (99%)."
    assert without_notice("cnn says ring.", {}) == "cnn says ring."


def test_model_card_reads_architecture_from_the_api_or_its_card() -> None:
    direct = ModelCard(name="a", family="vit", task="classification", architecture={"layers": 6})
    carded = ModelCard(name="b", family="vit", task="classification", card={"architecture": {"layers": 2}})
    assert direct.arch == {"layers": 6} and carded.arch == {"layers": 2}
    assert ModelCard(name="c", family="cnn", task="classification").arch is None
