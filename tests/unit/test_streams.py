"""The stream hub: numbered events, replay for late readers, Last-Event-ID, keepalive."""

import asyncio
from datetime import UTC, datetime

import pytest

from server.predictions.prediction import Prediction, PredictionEvent
from server.predictions.status import Status
from server.streams.hub import StreamEvent, StreamHub

pytestmark = pytest.mark.anyio


def prediction(**fields: object) -> Prediction:
    values: dict[str, object] = {
        "id": "p1",
        "account_id": 1,
        "account": "a",
        "model": "a/m",
        "model_id": 1,
        "version_id": "v",
        "status": Status.PROCESSING,
        "input": {},
        "created_at": datetime.now(UTC),
        "iterator": True,
        "output": [],
    }
    values.update(fields)
    return Prediction(**values)  # type: ignore[arg-type]


async def collect(hub: StreamHub, p: Prediction, after: int = 0) -> list[bytes]:
    return [chunk async for chunk in hub.subscribe(p, after)]


def test_events_encode_as_sse_with_ids_and_multiline_data() -> None:
    event = StreamEvent(3, "logs", "one\ntwo")
    assert event.encode() == b"id: 3\nevent: logs\ndata: one\ndata: two\n\n"


async def test_live_events_then_replay_and_resume() -> None:
    hub = StreamHub(keepalive=5)
    p = prediction()
    hub.publish(PredictionEvent("created", p))
    reader = asyncio.create_task(collect(hub, p))
    await asyncio.sleep(0.01)
    for token in ("Hello", " world"):
        p.output.append(token)
        hub.publish(PredictionEvent("output", p, data=token))
    hub.publish(PredictionEvent("logs", p, data="tick\n"))
    p.status = Status.SUCCEEDED
    hub.publish(PredictionEvent("completed", p))
    live = await asyncio.wait_for(reader, 1)
    assert b"".join(live) == (
        b"id: 1\nevent: output\ndata: Hello\n\n"
        b"id: 2\nevent: output\ndata:  world\n\n"
        b"id: 3\nevent: logs\ndata: tick\ndata: \n\n"
        b"id: 4\nevent: done\ndata: {}\n\n"
    )
    assert await collect(hub, p) == live, "a late reader gets the whole replay"
    assert await collect(hub, p, after=2) == live[2:], "Last-Event-ID resumes after it"


async def test_keepalive_while_nothing_happens() -> None:
    hub = StreamHub(keepalive=0.05)
    p = prediction()
    hub.publish(PredictionEvent("created", p))
    stream = hub.subscribe(p)
    assert await asyncio.wait_for(anext(stream), 1) == b": keepalive\n\n"
    p.status = Status.CANCELED
    hub.publish(PredictionEvent("completed", p))
    assert await anext(stream) == b'id: 1\nevent: done\ndata: {"reason": "canceled"}\n\n'
    await stream.aclose()


async def test_a_finished_prediction_is_rebuilt_from_what_it_stored() -> None:
    hub = StreamHub()
    failed = prediction(
        status=Status.FAILED, output=["a", "b"], logs="boom\n", error="ValueError: no"
    )
    events = b"".join(await collect(hub, failed))
    assert events.count(b"event: output") == 2
    assert b'event: error\ndata: {"detail": "ValueError: no"}' in events
    assert events.endswith(b"event: done\ndata: {}\n\n")
    plain = prediction(id="p2", iterator=False, status=Status.SUCCEEDED, output={"x": 1})
    assert b'event: output\ndata: {"x":1}' in b"".join(await collect(hub, plain))


async def test_a_channel_nobody_read_is_dropped_when_the_prediction_ends() -> None:
    """Only read channels linger; the others are rebuilt on demand from the prediction."""
    hub = StreamHub(keepalive=5)
    unread, read = prediction(), prediction(id="p2")
    for p in (unread, read):
        hub.publish(PredictionEvent("created", p))
    reader = asyncio.create_task(collect(hub, read))
    await asyncio.sleep(0.01)
    for p in (unread, read):
        p.output.append("x")
        hub.publish(PredictionEvent("output", p, data="x"))
        p.status = Status.SUCCEEDED
        hub.publish(PredictionEvent("completed", p))
    live = await asyncio.wait_for(reader, 1)
    assert list(hub.channels) == ["p2"]
    assert await collect(hub, read) == live
    assert await collect(hub, unread) == live, "rebuilt: the same events"
