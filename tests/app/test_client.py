"""The thin client against a fake transport: request shapes and readable error messages."""

from __future__ import annotations

import json

import httpx
import pytest

from app.client import ApiClient, ApiError


def make_client(handler) -> ApiClient:  # type: ignore[no-untyped-def]
    return ApiClient("http://api.test", transport=httpx.MockTransport(handler))


def test_submit_poll_cancel_shapes() -> None:
    seen: list[tuple[str, str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        if request.method == "POST":
            return httpx.Response(202, json={"id": "j1", "status": "queued"})
        if request.method == "DELETE":
            return httpx.Response(202, json={"id": "j1", "status": "cancelling"})
        return httpx.Response(
            200,
            json={
                "id": "j1",
                "lab": "predict",
                "status": "finished",
                "progress": 1.0,
                "message": None,
                "result": {
                    "figures": [{"data": [], "layout": {}}],
                    "metrics": {"m": {"top1": "star"}},
                    "text": "t",
                },
                "error": None,
            },
        )

    client = make_client(handler)
    assert client.submit_job("predict", ["cnn-shapes"], "example-x", {"top_k": 3}) == "j1"
    view = client.job("j1")
    assert view.done and view.result is not None and view.result.metrics["m"]["top1"] == "star"
    client.cancel_job("j1")
    assert seen[0] == (
        "POST",
        "/api/jobs",
        {"lab": "predict", "models": ["cnn-shapes"], "params": {"top_k": 3}, "image_id": "example-x"},
    )
    assert [s[:2] for s in seen[1:]] == [("GET", "/api/jobs/j1"), ("DELETE", "/api/jobs/j1")]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            404,
            {"detail": "unknown lab 'nope'; known labs: predict"},
            "unknown lab 'nope'; known labs: predict",
        ),
        (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", "params", "top_k"],
                        "msg": "Input should be less than or equal to 20",
                        "type": "less_than_equal",
                    }
                ]
            },
            "invalid parameters: top_k: Input should be less than or equal to 20",
        ),
        (
            415,
            {"detail": "the file is not an image; upload PNG, JPEG or WEBP"},
            "the file is not an image; upload PNG, JPEG or WEBP",
        ),
        (500, None, "the API answered 500 Internal Server Error"),
    ],
)
def test_errors_are_sentences(status: int, body: object, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="Traceback (most recent call last): ...")
        return httpx.Response(status, json=body)

    with pytest.raises(ApiError) as info:
        make_client(handler).submit_job("predict", ["m"])
    assert str(info.value) == expected and info.value.status == status
    assert "Traceback" not in str(info.value)


def test_unreachable_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ApiError, match="not reachable"):
        make_client(handler).labs()


def test_upload_and_unexpected_shapes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/images":
            assert b'name="file"' in request.content
            return httpx.Response(201, json={"image_id": "abc", "width": 1, "height": 1})
        return httpx.Response(200, json=[{"name": "x"}])  # a lab without its title

    client = make_client(handler)
    assert client.upload_image(b"\x89PNG...", "a.png") == "abc"
    with pytest.raises(ApiError, match="unexpected shape"):
        client.labs()
