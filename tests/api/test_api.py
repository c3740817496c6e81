"""The HTTP API through the real app (embedded queue, real worker thread, shipped trained models)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from backend.config import Settings
from backend.main import create_app

MODEL = "cnn-shapes"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = Settings(max_upload_bytes=200_000, max_image_pixels=1_000_000)
    with TestClient(create_app(settings, mount_ui=False)) as c:
        yield c


def png_bytes(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def upload(c: TestClient, data: bytes, name: str = "x.png", ctype: str = "image/png"):  # type: ignore[no-untyped-def]
    return c.post("/api/images", files={"file": (name, data, ctype)})


def wait(c: TestClient, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = c.get(f"/api/jobs/{job_id}").json()
        if view["status"] in ("finished", "failed", "cancelled"):
            return dict(view)
        time.sleep(0.1)
    raise TimeoutError(job_id)


def test_health(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert {k: health[k] for k in ("status", "queue", "workers")} == {
        "status": "ok",
        "queue": "embedded",
        "workers": 1,
    }
    assert [w["device"] for w in health["worker_info"]] == ["cpu"]


def test_models_list_the_zoo_with_cards(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/api/models").json()}
    assert MODEL in models
    card = models[MODEL]["card"]
    assert card is not None and 0.0 <= card["test_accuracy"] <= 1.0
    assert models[MODEL]["params"] == card["params"] > 0
    assert models[MODEL]["input_size"][0] == 3
    assert len(models[MODEL]["class_names"]) >= 8
    # Transformer-style models carry their architecture (the UI bounds layer and head fields with it),
    # counted here from the built model itself.
    from backend.models import create_model

    convit = create_model("convit-shapes")
    blocks = list(convit.blocks)  # type: ignore[union-attr,arg-type]
    arch = models["convit-shapes"]["architecture"]
    assert arch["layers"] == len(blocks) and arch["heads"] == blocks[0].attn.num_heads
    assert arch["gpsa_layers"] == sum(bool(getattr(b, "use_gpsa", False)) for b in blocks) > 0
    assert models[MODEL]["architecture"] is None  # a CNN has no blocks of heads


def test_labs_list_params_schema(client: TestClient) -> None:
    labs = {lab["name"]: lab for lab in client.get("/api/labs").json()}
    schema = labs["predict"]["params_schema"]
    assert schema["properties"]["top_k"]["default"] == 5
    assert schema["properties"]["top_k"]["maximum"] == 20
    assert labs["predict"]["needs_image"] is True


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {
        "/api/health",
        "/api/models",
        "/api/labs",
        "/api/images",
        "/api/jobs",
        "/api/jobs/{job_id}",
    } <= set(spec["paths"])


def test_upload_normalises_to_rgb_png_and_applies_exif_orientation(client: TestClient) -> None:
    # A 30x10 image whose EXIF says "rotate 90°": the stored image must be 10x30.
    img = Image.new("RGB", (30, 10), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW
    r = upload(client, png_bytes(img, "JPEG", exif=exif), "p.jpg", "image/jpeg")
    assert r.status_code == 201, r.text
    assert (r.json()["width"], r.json()["height"]) == (10, 30)
    stored = Image.open(io.BytesIO(client.get(f"/api/images/{r.json()['image_id']}").content))
    assert stored.format == "PNG" and stored.mode == "RGB" and stored.size == (10, 30)


@pytest.mark.parametrize(
    ("data", "status", "needle"),
    [
        (b"definitely not an image", 415, "not an image"),
        (png_bytes(Image.new("RGB", (4, 4)), "GIF"), 415, "GIF"),
        (b"", 422, "empty"),
        (b"\x89PNG" + b"0" * 250_000, 413, "too large"),
        (png_bytes(Image.new("L", (1200, 1200))), 413, "too many pixels"),
    ],
    ids=["text", "gif", "empty", "too-large", "pixel-bomb"],
)
def test_bad_uploads_get_clear_4xx(client: TestClient, data: bytes, status: int, needle: str) -> None:
    r = upload(client, data)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_upload_without_file_field(client: TestClient) -> None:
    r = client.post("/api/images", data={"other": "x"})
    assert r.status_code == 422
    assert '"file"' in r.json()["detail"]


def test_unknown_image_is_404(client: TestClient) -> None:
    assert client.get("/api/images/nope").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"lab": "nope", "models": [MODEL], "image_id": "example-x"}, 404, "unknown lab"),
        ({"lab": "predict", "models": ["nope"], "image_id": None}, 404, "unknown model"),
        ({"lab": "predict", "models": [MODEL]}, 422, "needs an image"),
        ({"lab": "predict", "models": [MODEL], "image_id": "missing"}, 404, "unknown or expired image"),
        ({"lab": "predict", "models": [MODEL] * 5, "image_id": "x"}, 422, "at most"),
        ({"lab": "predict", "models": [], "image_id": "x"}, 422, "at least one model"),
    ],
)
def test_bad_jobs_are_rejected_before_queueing(
    client: TestClient, body: dict, status: int, needle: str
) -> None:
    r = client.post("/api/jobs", json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_bad_params_give_field_errors(client: TestClient) -> None:
    image_id = client.get("/api/examples").json()[0]["image_id"]
    r = client.post(
        "/api/jobs", json={"lab": "predict", "models": [MODEL], "image_id": image_id, "params": {"top_k": 0}}
    )
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "params", "top_k"] and "greater than or equal" in err["msg"]
    r = client.post(
        "/api/jobs", json={"lab": "predict", "models": [MODEL], "image_id": image_id, "params": {"typo": 1}}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "typo"


def independent_probs(image: Image.Image) -> np.ndarray:
    """The model's probabilities computed without the lab, the queue or timm's transforms."""
    from backend.models.registry import create_model, get_entry

    entry = get_entry(MODEL)
    _, h, w = entry.input_size
    x = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    x = (x - np.array(entry.mean, dtype=np.float32)) / np.array(entry.std, dtype=np.float32)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    with torch.no_grad():
        return torch.softmax(create_model(MODEL)(t), -1)[0].numpy()


def test_predict_job_figure_comes_from_the_trained_model(client: TestClient) -> None:
    from backend.data.examples import list_examples, load_example

    example = next(e for e in list_examples() if e.name.startswith("shapes-"))
    r = client.post(
        "/api/jobs",
        json={
            "lab": "predict",
            "models": [MODEL],
            "image_id": f"example-{example.name}",
            "params": {"top_k": 3},
        },
    )
    assert r.status_code == 202
    view = wait(client, r.json()["id"])
    assert view["status"] == "finished", view
    # figures[0] shows the image and the model input; figures[1] the probabilities (classes in training order)
    bars = view["result"]["figures"][1]["data"][0]
    probs = independent_probs(load_example(example.name))
    from backend.models.registry import get_entry

    names = list(get_entry(MODEL).class_names)
    expected = sorted(np.argsort(-probs)[:3])
    assert bars["y"] == [names[i] for i in expected]
    np.testing.assert_allclose(bars["x"], probs[expected], atol=2e-3)
    # The shipped model recognises its own test-split example.
    assert view["result"]["metrics"][MODEL]["top1"] == example.name.removeprefix("shapes-")


def test_finished_results_expire() -> None:
    settings = Settings(result_ttl_s=3)  # long enough for the poll below to see "finished" on a busy machine
    with TestClient(create_app(settings, mount_ui=False)) as c:
        image_id = c.get("/api/examples").json()[0]["image_id"]
        r = c.post("/api/jobs", json={"lab": "predict", "models": [MODEL], "image_id": image_id})
        job_id = r.json()["id"]
        assert wait(c, job_id)["status"] == "finished"
        time.sleep(4.0)
        r = c.get(f"/api/jobs/{job_id}")
        assert r.status_code == 404 and "expired" in r.json()["detail"]


def test_serve_lists_a_researchers_timm_checkpoint(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    ckpt = tmp_path / "resnet10t.safetensors"
    model = timm.create_model("resnet10t", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    settings = Settings(timm_models=[f"resnet10t={ckpt}"])
    with TestClient(create_app(settings, mount_ui=False)) as c:
        listed = {m["name"]: m for m in c.get("/api/models").json()}
    assert listed["resnet10t"]["family"] == "cnn"  # a timm ResNet joins the labs that take CNNs
    assert listed["resnet10t"]["input_size"] == list(model.pretrained_cfg["input_size"])  # timm's own config
