"""``urls.stream`` over the API: a capability URL, SSE with ids, errors and replay."""

import httpx
import pytest

from tests.conftest import Api

pytestmark = pytest.mark.anyio


async def test_stream_url_works_without_authorization(api: Api) -> None:
    body = (
        await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"text": "ab", "count": 2}},
            headers={"Prefer": "wait"},
        )
    ).json()
    url = body["urls"]["stream"]
    assert url.startswith(f"http://gw.test/v1/streams/{body['id']}/")
    async with httpx.AsyncClient(transport=api.transport) as anonymous:
        resp = await anonymous.get(url, headers={"Accept": "text/event-stream"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text == (
        "id: 1\nevent: logs\ndata: echoing\ndata: \n\n"
        "id: 2\nevent: output\ndata: abab\n\n"
        "id: 3\nevent: done\ndata: {}\n\n"
    )
    resumed = await api.client.get(url, headers={"Last-Event-ID": "2"})
    assert resumed.text == "id: 3\nevent: done\ndata: {}\n\n"
    wrong = await api.client.get(url[:-3] + "xyz")
    assert wrong.status_code == 404
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_a_failed_prediction_streams_an_error_event(api: Api) -> None:
    body = (
        await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"text": "fail"}},
            headers={"Prefer": "wait"},
        )
    ).json()
    text = (await api.client.get(body["urls"]["stream"])).text
    assert 'event: error\ndata: {"detail": "ValueError: fail"}' in text
    assert text.endswith("event: done\ndata: {}\n\n")
