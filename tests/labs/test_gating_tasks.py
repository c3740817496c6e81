"""The gating lab shows the relational task's gates beside the shapes ones, read from the shipped files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from backend.labs.base import LabContext, LoadedModel, get_lab
from backend.labs.gating import gate_move
from backend.models.registry import get_entry
from backend.models.relational import relational_entry


def test_gate_move_by_hand() -> None:
    hist = [{"gates": [[0.73, 0.73]]}, {"gates": [[0.70, 0.80]]}]
    assert gate_move(hist) == pytest.approx(0.07)
    assert gate_move(None) is None and gate_move([{"step": 0}]) is None


def test_relational_gates_come_from_the_shipped_weights() -> None:
    entry = relational_entry("convit-relational")
    if entry.weights_path is None or not entry.weights_path.exists():
        pytest.skip("convit-relational not trained yet (biaslab zoo train convit-relational)")
    shapes = get_entry("convit-shapes")
    torch.manual_seed(0)
    module = shapes.builder().eval()
    module.pretrained_cfg = shapes.pretrained_cfg()  # type: ignore[assignment]
    lab = get_lab("gating")
    params = lab.Params(probe_size=16, counterfactual="none")
    res = lab.run(LabContext(models=[LoadedModel("convit-shapes", shapes, module)], image=None), params)
    state = load_file(str(entry.weights_path))
    expected = torch.stack([torch.sigmoid(state[f"blocks.{i}.attn.gating_param"]) for i in range(4)])
    got = torch.tensor(res.metrics["convit-relational"]["gate_sigma_lambda"])
    assert torch.allclose(got, expected, atol=1e-4)
    assert res.metrics["convit-relational"]["test_accuracy"] == entry.card()["test_accuracy"]  # type: ignore[index]
    # Which model kept its locality initialisation comes from the registry, not from a card field.
    assert res.metrics["convit-relational"]["local_init"] is True
    assert res.metrics["convit-nolocal-relational"]["local_init"] is False
    figs = lab.figures(res, params)
    json.dumps(figs)
    side = [f for f in figs if "two tasks side by side" in f["layout"]["title"]["text"]]
    assert side and len(side[0]["data"]) >= 2  # the shapes model and at least one relational model
