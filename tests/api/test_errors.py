"""Every error leaves as problem+json: auth, bad bodies, bad inputs, unknown things."""

import re

import httpx
import pytest

from server.predictions import fastpath
from tests.conftest import Api

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": ""}],
    ids=["missing", "wrong-token", "wrong-scheme", "empty"],
)
async def test_unauthenticated_is_401_problem(api: Api, headers: dict[str, str]) -> None:
    """No or bad token -> 401 with Replicate's title and detail."""
    api.client.headers.pop("Authorization")
    resp = await api.client.get("/v1/predictions", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json() == {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    }


async def test_token_scheme_is_accepted_case_insensitively(api: Api) -> None:
    """Both 'Bearer' and 'Token' schemes work, in any case."""
    token = api.client.headers.pop("Authorization").split()[1]
    for scheme in ("Token", "bearer", "TOKEN"):
        resp = await api.client.get("/v1/account", headers={"Authorization": f"{scheme} {token}"})
        assert resp.status_code == 200
        assert resp.json()["username"] == "admin"


async def test_out_of_range_input_lists_invalid_fields(api: Api) -> None:
    """Inputs are checked against the version's schema before dispatch."""
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": {"count": 11, "color": "pink", "text": 3}},
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["title"] == "Input validation failed"
    assert body["invalid_fields"] == [
        {
            "type": "enum",
            "field": "input.color",
            "description": 'color must be one of the following: "red", "green"',
        },
        {
            "type": "number_lte",
            "field": "input.count",
            "description": "Must be less than or equal to 10",
        },
        {
            "type": "invalid_type",
            "field": "input.text",
            "description": "Invalid type. Expected: string, given: integer",
        },
    ]
    assert "- input.count: Must be less than or equal to 10\n" in body["detail"]
    assert api.runtime.started == []  # nothing was dispatched


async def test_unknown_version_is_422_invalid_version(api: Api) -> None:
    """An unknown version gets Replicate's 'Invalid version or not permitted'."""
    for ref in ("0" * 64, "acme/nope", "acme/echo:" + "1" * 64, "not a ref"):
        resp = await api.client.post("/v1/predictions", json={"version": ref, "input": {}})
        assert resp.status_code == 422, ref
        assert resp.json()["title"] == "Invalid version or not permitted"


async def test_missing_version_is_422(api: Api) -> None:
    """POST /v1/predictions without a version names the missing field."""
    resp = await api.client.post("/v1/predictions", json={"input": {}})
    assert resp.status_code == 422
    assert resp.json()["invalid_fields"][0]["field"] == "version"


@pytest.mark.parametrize("body", [b"{bad", b"[1,", b'{"input": }'])
async def test_malformed_json_is_400(api: Api, body: bytes) -> None:
    """Unparseable JSON is a 400 problem, never a 500."""
    resp = await api.client.post(
        "/v1/predictions", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["detail"] == "Request body is not valid JSON."


async def test_form_encoded_json_body_is_read(api: Api) -> None:
    """curl -d sends JSON as form-encoded; the body is still read as JSON."""
    resp = await api.client.post(
        "/v1/models/acme/echo/predictions",
        content=b'{"input": {"text": "curl"}}',
        headers={"Content-Type": "application/x-www-form-urlencoded", "Prefer": "wait"},
    )
    assert resp.status_code == 201
    assert resp.json()["output"] == "curl"


@pytest.mark.parametrize("body", [b"[]", b'"text"', b'{"input": [1]}', b'{"input": "x"}'])
async def test_wrong_shapes_are_422(api: Api, body: bytes) -> None:
    """A body or input that is not an object is a 422 problem."""
    resp = await api.client.post("/v1/models/acme/echo/predictions", content=body)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM


async def test_extra_body_fields_are_ignored(api: Api) -> None:
    """stream, webhook_completed and unknown keys from JS spreads never cause a 422."""
    resp = await api.client.post(
        "/v1/predictions",
        json={
            "version": api.version_id,
            "input": {"text": "x", "unknown_input": 1},
            "stream": True,
            "webhook_completed": "https://example.com/hook",
            "whatever": {"a": 1},
        },
        headers={"Prefer": "wait"},
    )
    assert resp.status_code == 201
    assert resp.json()["output"] == "x"


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    """Unknown paths are 404 and wrong methods 405, both problem+json; no redirects."""
    resp = await api.client.get("/v1/nothing-here")
    assert (resp.status_code, resp.headers["content-type"]) == (404, PROBLEM)
    resp = await api.client.delete("/v1/predictions")
    assert (resp.status_code, resp.headers["content-type"]) == (405, PROBLEM)
    resp = await api.client.get("/v1/predictions/")
    assert resp.status_code == 404
    assert "location" not in resp.headers


async def test_unknown_prediction_is_404(api: Api) -> None:
    resp = await api.client.get("/v1/predictions/doesnotexist")
    assert resp.status_code == 404
    assert resp.json()["status"] == 404


async def test_bad_cursor_is_400(api: Api) -> None:
    resp = await api.client.get("/v1/predictions?cursor=%%%")
    assert resp.status_code == 400


async def test_an_unexpected_failure_while_creating_is_a_500_problem(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prediction endpoints skip FastAPI's routing (``server.predictions.fastpath``); a bug
    there still leaves as problem+json, never a traceback."""

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(api.services.predictions, "create", broken)
    transport = httpx.ASGITransport(app=api.transport.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gw.test", headers=dict(api.client.headers)
    ) as client:
        resp = await client.post(f"/v1/models/{api.model}/predictions", json={"input": {}})
    assert (resp.status_code, resp.headers["content-type"]) == (500, PROBLEM)
    assert "boom" not in resp.text
    assert resp.json()["status"] == 500


async def test_the_fast_path_answers_as_the_route_would(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same requests through ``HotPath`` and through FastAPI's own routes (the hot path
    switched off) get the same status, content type and body shape."""
    requests = [
        ("/v1/predictions", {"version": api.version_id, "input": {"text": "a"}}, {}),
        (f"/v1/models/{api.model}/predictions", {"input": {"count": 99}}, {}),
        ("/v1/predictions", {"input": {}}, {}),
        ("/v1/models/acme/nope/predictions", {"input": {}}, {}),
        (f"/v1/models/{api.model}/predictions", {"input": {}}, {"Cancel-After": "x"}),
        (f"/v1/models/{api.model}/predictions", {"input": {}}, {"Authorization": "Bearer no"}),
    ]

    created = (await api.client.post(*requests[0][:1], json=requests[0][1])).json()["id"]
    gets = [f"/v1/predictions/{created}", "/v1/predictions/nope", "/v1/predictions/a/b"]

    async def answers() -> list[tuple[int, str, list[str]]]:
        out = []
        for path, body, headers in requests:
            resp = await api.client.post(path, json=body, headers=headers)
            out.append((resp.status_code, resp.headers["content-type"], sorted(resp.json())))
        for path in gets:
            resp = await api.client.get(path)
            out.append((resp.status_code, resp.headers["content-type"], sorted(resp.json())))
        return out

    fast = await answers()
    monkeypatch.setattr(fastpath, "ROUTES", {})
    assert await answers() == fast
    assert [status for status, _, _ in fast] == [201, 422, 422, 422, 422, 401, 200, 404, 404]


async def test_every_answer_carries_its_own_request_id(api: Api) -> None:
    """The id bound to a request's log lines comes back as ``X-Request-Id`` (errors too)."""
    seen = []
    for path in ("/v1/account", "/v1/predictions/nope", "/v1/account"):
        resp = await api.client.get(path)
        seen.append(resp.headers["x-request-id"])
    assert all(re.fullmatch(r"[0-9a-f]{16}", rid) for rid in seen), seen
    assert len(set(seen)) == 3
