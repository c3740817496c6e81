"""Fuzzing, bounded in examples and time: hypothesis against /api/jobs and /api/images, and
schemathesis against the app's own OpenAPI document. Nothing may answer 5xx, every answer must be
strict JSON in the documented error shape, and every documented status must be the one sent.

The app runs with a real redis-server and no worker, so accepted jobs only queue (random
parameters could otherwise ask for minutes of work); a full queue answers 429, which is allowed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from conftest import RedisServer
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.config import Settings
from backend.main import create_app

LABS = ["predict", "attention", "attribution", "gating", "sample-efficiency"]
MODELS = ["cnn-shapes", "convit-shapes", "deit-shapes", "mixer-shapes", "mlp-shapes"]
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from conftest import free_port, need_binary

    server = RedisServer(
        need_binary("redis-server", "fuzz tests"), free_port(), tmp_path_factory.mktemp("fz")
    )
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[TestClient]:
    config = Settings(
        redis_url=redis_url, workers=0, rate_limit_per_minute=0, max_queued_jobs=50, max_upload_bytes=300_000
    )
    with TestClient(create_app(config, mount_ui=False)) as c:
        yield c


def strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def check_error_shape(status: int, text: str) -> None:
    assert status < 500, text[:500]
    body = strict(text)
    if status >= 400:
        assert isinstance(body, dict) and set(body) == {"detail"}, text[:500]
        detail = body["detail"]
        if isinstance(detail, list):
            for err in detail:
                assert {"type", "loc", "msg"} <= set(err), err
                assert len(json.dumps(err.get("input"))) < 400  # never the whole input back
        else:
            assert isinstance(detail, str) and detail


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
param_names = st.sampled_from(
    ["top_k", "tta_samples", "seed", "max_shift", "layer", "head", "ig_steps", "probe_size", "target_class"]
) | st.text(max_size=12)
job_bodies = st.fixed_dictionaries(
    {},
    optional={
        "lab": st.sampled_from(LABS) | st.text(max_size=20) | json_scalars,
        "models": st.lists(st.sampled_from(MODELS) | st.text(max_size=15), max_size=6) | json_values,
        "image_id": st.sampled_from(["example-shapes-circle", "example-astronaut", "nope"]) | json_scalars,
        "params": st.dictionaries(param_names, json_values, max_size=5) | json_values,
        "timeout_s": json_scalars,
        "extra": json_values,
    },
)


@FUZZ
@given(body=job_bodies)
def test_fuzz_job_submission(client: TestClient, body: dict) -> None:
    text = json.dumps(body, allow_nan=True)  # NaN/Infinity as Python's json (and some clients) write them
    r = client.post("/api/jobs", content=text, headers={"content-type": "application/json"})
    assert r.status_code in (202, 404, 413, 422, 429), (r.status_code, r.text[:300])
    check_error_shape(r.status_code, r.text)


@FUZZ
@given(job_id=st.text(max_size=80), method=st.sampled_from(["GET", "DELETE"]))
def test_fuzz_job_ids(client: TestClient, job_id: str, method: str) -> None:
    if job_id.strip("/") in ("", ".", ".."):
        # Keep it one path segment: the server decodes %2F, so "/" alone would name the collection
        # (/api/jobs//, redirected to /api/jobs, where GET and DELETE are 405 by HTTP's rules).
        job_id = f"x{job_id}"
    r = client.request(method, f"/api/jobs/{quote(job_id, safe='')}")
    assert r.status_code in (404, 422), (job_id, r.status_code, r.text[:300])
    check_error_shape(r.status_code, r.text)


def _image_bytes(size: tuple[int, int], mode: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    image = Image.new(mode, size, 128)
    try:
        image.save(buf, format=fmt)
    except (OSError, ValueError):  # a mode this format cannot hold
        image.convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


valid_images = st.builds(
    _image_bytes,
    st.tuples(st.integers(1, 700), st.integers(1, 700)),
    st.sampled_from(["RGB", "RGBA", "L", "P", "1", "I;16"]),
    st.sampled_from(["PNG", "JPEG", "WEBP", "GIF", "BMP"]),
)


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_images))
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut])


uploads = valid_images | damaged_images() | st.binary(max_size=2000)


@FUZZ
@given(data=uploads, ctype=st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", ""]))
def test_fuzz_image_upload(client: TestClient, data: bytes, ctype: str) -> None:
    r = client.post("/api/images", files={"file": ("f", data, ctype)})
    assert r.status_code in (201, 413, 415, 422), (r.status_code, r.text[:300])
    check_error_shape(r.status_code, r.text)
    if r.status_code == 201:
        stored = Image.open(io.BytesIO(client.get(f"/api/images/{r.json()['image_id']}").content))
        assert stored.mode == "RGB" and max(stored.size) <= 512


def test_schemathesis_against_the_openapi_document(redis_url: str) -> None:
    """Every operation of /openapi.json with schema-driven data: no 5xx, statuses and bodies as
    documented. Run here (not via @schema.parametrize) so the example budget stays in one place."""
    import schemathesis
    from hypothesis import given as sgiven
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    config = Settings(redis_url=redis_url, workers=0, rate_limit_per_minute=0, max_queued_jobs=50)
    app = create_app(config, mount_ui=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [
        not_a_server_error,
        status_code_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    failures: list[str] = []
    calls: dict[str, int] = {}
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 9

    def runner(operation):  # type: ignore[no-untyped-def]
        name = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @sgiven(case=operation.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            calls[name] = calls.get(name, 0) + 1
            try:
                case.call_and_validate(checks=checks)
            except Exception as exc:  # collect and go on: one report for all operations
                failures.append(f"{name}: {str(exc)[:600]}")
                raise

        return run

    for operation in operations:
        try:
            runner(operation)()
        except Exception as exc:  # the failure text is in `failures`
            if not failures:
                raise  # the harness itself broke: show it
            del exc
    assert not failures, "\n\n".join(failures)
    # The fuzzing really ran: every operation, and many cases where there is something to vary.
    assert len(calls) == len(operations) and sum(calls.values()) >= 60, calls
