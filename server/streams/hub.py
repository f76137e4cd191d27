"""Server-sent event streams of predictions (``urls.stream``), fed by the PredictionListener seam.

Each prediction gets a channel: an append-only list of numbered events (``output``, ``logs``,
``error``, ``done`` — nothing else, the official clients reject other types). A subscriber gets
every event from the start (or after ``Last-Event-ID``) and then waits for more, so a late
subscriber sees a replay. A finished channel that was read lingers a while for readers coming
back (``Last-Event-ID``); one nobody read is dropped when the prediction ends (at a thousand
predictions a second, a minute of them was ~60,000 channels and timers held for nothing).
After that (or after a restart) the channel is rebuilt from the prediction as stored: its
outputs, its logs, then how it ended. A reader that goes away changes nothing about the
prediction.
"""

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.predictions.prediction import Prediction, PredictionEvent
from server.predictions.status import Status

LINGER_S = 60.0  # a finished channel stays in memory this long for late subscribers


@dataclass(frozen=True)
class StreamEvent:
    id: int
    event: str
    data: str

    def encode(self) -> bytes:
        lines = [f"id: {self.id}", f"event: {self.event}"]
        lines += [f"data: {line}" for line in self.data.split("\n")]
        return ("\n".join(lines) + "\n\n").encode()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@dataclass
class Channel:
    events: list[StreamEvent] = field(default_factory=list)
    closed: bool = False
    read: bool = False
    """Someone subscribed: when it finishes, it lingers for readers coming back."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, event: str, data: str) -> None:
        if self.closed:
            return
        self.events.append(StreamEvent(len(self.events) + 1, event, data))
        self.changed.set()
        self.changed = asyncio.Event()

    def finish(self, p: Prediction) -> None:
        if self.closed:
            return
        if not p.iterator and p.status is Status.SUCCEEDED and p.output is not None:
            self.append("output", _text(p.output))
        if p.status is Status.FAILED:
            self.append("error", json.dumps({"detail": p.error or "Prediction failed."}))
        reason = {"reason": "canceled"} if p.status is Status.CANCELED else {}
        self.append("done", json.dumps(reason))
        self.closed = True

    @classmethod
    def rebuilt(cls, p: Prediction) -> "Channel":
        """A channel for a prediction whose live events are gone: what it holds now."""
        channel = cls()
        if p.iterator and isinstance(p.output, list):
            for item in p.output:
                channel.append("output", _text(item))
        if p.logs:
            channel.append("logs", p.logs)
        if p.status.is_terminal():
            channel.finish(p)
        return channel


class StreamHub:
    """Keeps the channels; a ``PredictionListener`` (it stages nothing in the database)."""

    def __init__(self, *, keepalive: float = 15.0, linger: float = LINGER_S) -> None:
        self.keepalive = keepalive
        self.linger = linger
        self.channels: dict[str, Channel] = {}

    def stage(self, event: PredictionEvent) -> Sequence[object]:
        return ()

    def publish(self, event: PredictionEvent) -> None:
        p = event.prediction
        if event.kind == "created":
            self.channels[p.id] = Channel()
            return
        channel = self.channels.get(p.id)
        if channel is None:  # resumed after a restart: start from what the prediction holds
            channel = self.channels[p.id] = Channel.rebuilt(p)
            if event.kind in ("output", "logs"):
                return  # rebuilt() already holds this chunk
        if event.kind == "output":
            channel.append("output", _text(event.data))
        elif event.kind == "logs":
            channel.append("logs", str(event.data))
        elif event.kind == "completed":
            channel.finish(p)
            if channel.read:
                asyncio.get_running_loop().call_later(self.linger, self._drop, p.id, channel)
            else:  # a reader from now on gets it rebuilt from the stored prediction
                self._drop(p.id, channel)

    def _drop(self, prediction_id: str, channel: Channel) -> None:
        if self.channels.get(prediction_id) is channel:
            del self.channels[prediction_id]

    def channel_for(self, p: Prediction) -> Channel:
        channel = self.channels.get(p.id)
        if channel is None:
            channel = Channel.rebuilt(p)
            if not channel.closed:  # still running (after a restart): keep it for its events
                self.channels[p.id] = channel
        return channel

    async def subscribe(self, p: Prediction, after: int = 0) -> AsyncGenerator[bytes]:
        """The encoded events after ``after``, then new ones as they come, until ``done``;
        a keepalive comment whenever ``keepalive`` seconds pass without one."""
        channel = self.channel_for(p)
        channel.read = True
        sent = max(0, after)
        while True:
            if sent < len(channel.events):
                event = channel.events[sent]
                sent += 1
                yield event.encode()
                continue
            if channel.closed:
                return
            waiter = channel.changed  # no await since the length check: nothing slips by
            try:
                await asyncio.wait_for(waiter.wait(), self.keepalive)
            except TimeoutError:
                yield b": keepalive\n\n"
