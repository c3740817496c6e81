"""`biaslab` from the shell, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def biaslab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_run_predict_writes_html_and_json(tmp_path: Path) -> None:
    from backend.data.examples import list_examples, load_example

    example = next(e for e in list_examples() if e.name.startswith("shapes-"))
    image = tmp_path / "in.png"
    load_example(example.name).save(image)
    out = tmp_path / "out"
    r = biaslab(
        "run", "predict", "--model", "cnn-shapes", "--model", "deit-shapes", "--image", str(image),
        "--param", "top_k=3", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    html = sorted(out.glob("predict-*.html"))
    assert len(html) == 2  # the image beside the model input, and one chart for both models
    assert all("plotly" in h.read_text()[:5_000_000].lower() for h in html)
    metrics = json.loads((out / "predict-metrics.json").read_text())["metrics"]
    assert set(metrics) == {"cnn-shapes", "deit-shapes", "ood"}
    assert metrics["ood"]["in_distribution"] is True  # a shapes test image
    assert all(0 < metrics[m]["confidence"] <= 1 for m in ("cnn-shapes", "deit-shapes"))


def test_run_rejects_bad_input_with_a_message(tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    out = str(tmp_path)
    # Side by side: each is a fresh interpreter that spends its seconds importing torch.
    with ThreadPoolExecutor(4) as pool:
        unknown_lab, unknown_model, bad_image, bad_param = pool.map(
            lambda args: biaslab(*args),
            [
                ("run", "nope", "--out", out),
                ("run", "predict", "--model", "nope", "--out", out),
                ("run", "predict", "--image", str(not_an_image), "--out", out),
                ("run", "predict", "--model", "cnn-shapes", "--param", "top_k=0", "--out", out),
            ],
        )
    assert unknown_lab.returncode == 2 and "unknown lab" in unknown_lab.stderr
    assert unknown_model.returncode == 2 and "unknown model" in unknown_model.stderr
    assert bad_image.returncode == 2 and "cannot read --image" in bad_image.stderr
    assert "Traceback" not in bad_image.stderr
    assert bad_param.returncode == 2 and "top_k" in bad_param.stderr


def test_help_lists_commands() -> None:
    r = biaslab("--help")
    assert r.returncode == 0
    for command in ("serve", "worker", "run", "zoo"):
        assert command in r.stdout


def test_run_with_a_timm_checkpoint_the_test_saved(tmp_path: Path) -> None:
    # A researcher's own timm checkpoint: architecture by name, weights from a local .safetensors file.
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = timm.create_model("resnet10t", pretrained=False).eval()
    ckpt = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(ckpt))
    image = tmp_path / "in.png"
    from backend.data.examples import load_example

    load_example("chelsea").save(image)
    out = tmp_path / "out"
    r = biaslab(
        "run", "predict", "--model", "resnet10t", "--weights", str(ckpt), "--image", str(image),
        "--param", "top_k=3", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    top = json.loads((out / "predict-metrics.json").read_text())["metrics"]["resnet10t"]

    # Independent check: the same weights through timm's own transforms give the same top-1 class.
    from PIL import Image

    cfg = timm.data.resolve_data_config({}, model=ref)
    x = timm.data.create_transform(**cfg)(Image.open(image).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probs = ref(x).softmax(-1)[0]
    info = timm.data.ImageNetInfo()
    assert top["top1"] == info.index_to_description(int(probs.argmax()))
    assert abs(top["confidence"] - float(probs.max())) < 1e-3

    r = biaslab(
        "run", "predict", "--model", "resnet10t", "--weights", str(tmp_path / "missing.pt"), "--out", str(out)
    )
    assert r.returncode == 2 and "no checkpoint file" in r.stderr
    r = biaslab("serve", "--port", "1", "--timm", f"resnet10t={tmp_path / 'missing.pt'}")
    assert r.returncode == 2 and "no checkpoint file" in r.stderr and "Traceback" not in r.stderr

    # The same checkpoint in a lab that takes CNNs: GradCAM on timm's last ResNet stage.
    r = biaslab(
        "run", "attribution", "--model", "resnet10t", "--weights", str(ckpt), "--image", str(image),
        "--param", "ig_steps=8", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "attribution-metrics.json").read_text())["metrics"]["resnet10t"]
    assert metrics["gradcam_layer"] == "layer4"
    assert len(list(out.glob("attribution-*.html"))) >= 2
