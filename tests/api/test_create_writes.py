"""What a create writes, and when: a ``Prefer: wait`` create's row rides along with a later
write (often its own terminal one), an async create's row commits before the answer."""

from collections.abc import Callable, Sequence

import httpx
import pytest

from server.dbwrite import Executor, Insert, Op, Update
from server.predictions.service import PREDICTIONS
from tests.conftest import Api

pytestmark = pytest.mark.anyio

WEBHOOK = "https://1.1.1.1/hooks/replicate"


class Recording:
    """The real executor, with every batch recorded and a way to make some fail."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.batches: list[list[Op]] = []
        self.fails: Callable[[Sequence[Op]], bool] = lambda ops: False

    async def run(self, ops: Sequence[Op]) -> None:
        if self.fails(ops):
            raise RuntimeError("disk I/O error")
        self.batches.append(list(ops))
        await self.inner.run(ops)

    def run_now(self, ops: Sequence[Op]) -> bool:
        if self.fails(ops):
            raise RuntimeError("disk I/O error")
        done = self.inner.run_now(ops)
        if done:
            self.batches.append(list(ops))
        return done

    async def close(self) -> None:
        await self.inner.close()

    def writes_of(self, prediction_id: str) -> list[Op]:
        return [
            op
            for batch in self.batches
            for op in batch
            if op.table is PREDICTIONS
            and (op.key if isinstance(op, Update) else op.values["id"]) == prediction_id
        ]


def recording(api: Api) -> Recording:
    writes = api.services.predictions.writes
    recorder = Recording(writes.executor)
    writes.executor = recorder
    return recorder


def inserted(op: Op) -> tuple[str, str]:
    assert isinstance(op, Insert)
    return (op.values["id"], op.values["status"])


async def test_a_prediction_that_finishes_while_held_is_written_once(api: Api) -> None:
    recorder = recording(api)
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": {"text": "ab"}},
        headers={"Prefer": "wait"},
    )
    body = resp.json()
    assert body["status"] == "succeeded"
    # one INSERT with the final row: no UPDATE for processing or for the terminal status
    assert [inserted(op) for op in recorder.writes_of(body["id"])] == [(body["id"], "succeeded")]
    listed = (await api.client.get("/v1/predictions")).json()["results"]
    assert [p["id"] for p in listed] == [body["id"]]


async def test_an_async_create_is_written_before_it_is_answered(api: Api) -> None:
    recorder = recording(api)
    resp = await api.client.post(
        "/v1/predictions", json={"version": api.version_id, "input": {"seconds": 30}}
    )
    body = resp.json()
    assert resp.status_code == 201
    assert [inserted(op) for op in recorder.writes_of(body["id"])] == [(body["id"], "starting")]
    await api.client.post(f"/v1/predictions/{body['id']}/cancel")


async def test_a_held_create_with_a_webhook_is_written_before_it_runs(api: Api) -> None:
    """Its webhook rows commit with it, so the row goes first, as for an async create."""
    recorder = recording(api)
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": {"text": "ab"}, "webhook": WEBHOOK},
        headers={"Prefer": "wait"},
    )
    body = resp.json()
    writes = recorder.writes_of(body["id"])
    assert inserted(writes[0]) == (body["id"], "starting")
    assert recorder.batches[0][0] == writes[0]  # alone, before anything else of it
    assert isinstance(writes[-1], Update)
    assert writes[-1].values["status"] == "succeeded"


async def test_a_wait_that_runs_out_answers_only_once_the_row_is_written(api: Api) -> None:
    recorder = recording(api)
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": {"seconds": 30}},
        headers={"Prefer": "wait=1"},
    )
    body = resp.json()
    assert body["status"] in ("starting", "processing")
    assert [inserted(op)[0] for op in recorder.writes_of(body["id"])[:1]] == [body["id"]]
    listed = (await api.client.get("/v1/predictions")).json()["results"]
    assert [p["id"] for p in listed] == [body["id"]]
    await api.client.post(f"/v1/predictions/{body['id']}/cancel")


async def test_a_held_create_whose_row_fails_is_an_error_and_leaves_nothing(api: Api) -> None:
    recorder = recording(api)
    recorder.fails = lambda ops: any(
        isinstance(op, Insert) and op.table is PREDICTIONS for op in ops
    )
    transport = httpx.ASGITransport(app=api.transport.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gw.test", headers=api.client.headers
    ) as client:
        resp = await client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"text": "ab"}},
            headers={"Prefer": "wait"},
        )
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/problem+json"
    recorder.fails = lambda ops: False
    assert (await api.client.get("/v1/predictions")).json()["results"] == []
    # nothing of it was written later either: no update, no usage record
    assert not [op for batch in recorder.batches for op in batch]
