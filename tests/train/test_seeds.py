"""`biaslab zoo seeds`: extra seeds are trained as `zoo train --seed S` would, and only their numbers
are written into the card, beside the shipped run's, with mean and sample std."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

import backend.config
from backend.config import Settings
from backend.models import registry
from backend.models.registry import get_entry
from backend.models.zoo import BASE_RECIPE

NAME = "mlp-seeds-test"
TINY = {**BASE_RECIPE, "steps": 20, "train_size": 256, "val_size": 64, "test_size": 128, "batch_size": 32}


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A zoo of one tiny MLP (the real builder, a 20-step recipe) in a scratch weights folder."""
    import dataclasses

    monkeypatch.setattr(backend.config, "_current", Settings(weights_dir=tmp_path))
    entry = dataclasses.replace(get_entry("mlp-shapes"), name=NAME, weights=NAME, recipe=TINY)
    monkeypatch.setitem(registry._MODELS._items, NAME, entry)
    return tmp_path


def test_seeds_are_recorded_beside_the_shipped_run(tiny_zoo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.train import seeds
    from backend.train.commands import train_zoo_model

    shipped = train_zoo_model(NAME, seed=0, progress=False)
    weights_before = (tiny_zoo / f"{NAME}.safetensors").read_bytes()
    block = seeds.record_seeds([NAME], [1, 2], train=train_zoo_model, progress=False)[NAME]

    card = json.loads((tiny_zoo / f"{NAME}.json").read_text())
    assert card["seeds"] == block
    assert (tiny_zoo / f"{NAME}.safetensors").read_bytes() == weights_before  # shipped file untouched
    assert card["test_accuracy"] == shipped["test_accuracy"]
    runs = block["runs"]
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert runs[0]["test_accuracy"] == shipped["test_accuracy"]
    # Seed 1 is exactly what `zoo train --seed 1` makes (same splits, same initialisation).
    again = train_zoo_model(NAME, seed=1, out_dir=tiny_zoo / "again", progress=False)
    assert runs[1]["test_accuracy"] == again["test_accuracy"]
    assert runs[1]["final_train_loss"] == again["final_train_loss"]
    accs = [r["test_accuracy"] for r in runs]
    assert len(set(accs)) > 1 or len({r["final_train_loss"] for r in runs}) > 1  # the seed did something
    summary = block["summary"]
    assert summary["n"] == 3
    assert summary["test_accuracy"]["mean"] == pytest.approx(statistics.mean(accs))
    assert summary["test_accuracy"]["std"] == pytest.approx(statistics.stdev(accs))
    assert all(0.0 <= r["train_accuracy"] <= 1.0 and r["train_probe"] == 256 for r in runs)

    # A second call resumes: recorded seeds are not trained again.
    def no_training(*args: Any) -> dict[str, Any]:
        raise AssertionError("a recorded seed was trained again")

    monkeypatch.setattr(seeds, "train_seed", no_training)
    assert seeds.record_seeds([NAME], [1, 2], train=train_zoo_model, progress=False)[NAME] == block


def test_zoo_list_shows_the_seed_spread(
    tiny_zoo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.train.commands import cmd_list, train_zoo_model, zoo_table
    from backend.train.seeds import record_seeds

    train_zoo_model(NAME, seed=0, progress=False)
    block = record_seeds([NAME], [1], train=train_zoo_model, progress=False)[NAME]
    row = next(r for r in zoo_table() if r["name"] == NAME)
    acc = block["summary"]["test_accuracy"]
    assert row["seeds"] == 2
    assert row["test_accuracy_mean"] == acc["mean"] and row["test_accuracy_std"] == acc["std"]
    monkeypatch.setenv("COLUMNS", "200")  # one line per model, as in a wide terminal
    cmd_list(None)  # type: ignore[arg-type]
    assert f"{acc['mean']:.3f} ± {acc['std']:.3f} (2)" in capsys.readouterr().out


def test_seeds_refuses_what_has_no_test_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    from backend.cli import main

    assert main(["zoo", "seeds", "unet-patches", "--seeds", "1"]) == 2
    assert "classifiers" in capsys.readouterr().out
    assert main(["zoo", "seeds", "nope"]) == 2
