"""clevr-lite carries its language prior in training and is balanced against it in the test split."""

from __future__ import annotations

import numpy as np

from backend.data import load_dataset
from backend.data.clevr_lite import (
    COLORS,
    SHAPES,
    balanced_questions,
    caption,
    scene_objects,
    training_questions,
)


def _colour_share(objects: np.ndarray, shape: str, colour: str) -> float:
    o = objects.reshape(-1, 4)
    o = o[o[:, 0] == SHAPES.index(shape)]
    return float((o[:, 1] == COLORS.index(colour)).mean())


def test_training_split_carries_the_prior_and_test_is_balanced() -> None:
    train = load_dataset("clevr-lite", "train", n=800, seed=0).meta["objects"]
    test = load_dataset("clevr-lite", "test", n=800, seed=0).meta["objects"]
    assert abs(_colour_share(train, "ball", "red") - 0.9) < 0.05
    assert abs(_colour_share(train, "cone", "yellow") - 0.9) < 0.05
    assert abs(_colour_share(test, "ball", "red") - 0.25) < 0.07  # every colour equally likely
    qs = training_questions(train, np.random.default_rng(0))
    yes = [q.answer == "yes" for q in qs if q.kind == "exists"]
    assert abs(np.mean(yes) - 0.8) < 0.07
    bal = [q for q in balanced_questions(test[:600], 0) if q.kind == "exists"]
    assert np.mean([q.answer == "yes" for q in bal]) == 0.5
    assert any(q.adversarial for q in bal)


def test_answers_are_true_of_the_scene() -> None:
    test = load_dataset("clevr-lite", "test", n=120, seed=1).meta["objects"]
    for row, qa in zip(test, balanced_questions(test, 1), strict=True):
        objs = scene_objects(row)
        words = qa.question.rstrip("?").split()
        if qa.kind == "exists":
            colour, shape = words[-2], words[-1]
            assert (qa.answer == "yes") == any(s == shape and c == colour for s, c, _ in objs)
        elif qa.kind == "color":
            assert [c for s, c, _ in objs if s == words[-1]] == [qa.answer]
        elif qa.kind == "caption":
            assert qa.answer == caption(row) and qa.answer.count(" and ") == len(objs) - 1
