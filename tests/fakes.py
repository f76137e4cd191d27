"""Fakes behind the same small interfaces as the real parts: runtime, instance API, builder."""

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from server.runtime import cogyaml
from server.runtime.base import InstanceHandle, InstanceSpec
from server.runtime.builder import BuildLog, BuildResult
from server.runtime.cog_client import (
    CogResult,
    EventHandler,
    InstanceAPI,
    InstanceBusy,
    InstanceUnavailable,
)
from server.runtime.envs import EnvBuildFailed

FAKE_SCHEMA: dict[str, Any] = {
    "openapi": "3.0.2",
    "paths": {"/predictions": {"post": {"x-cog-streaming": False}}},
    "components": {
        "schemas": {
            "Input": {
                "title": "Input",
                "type": "object",
                "properties": {
                    "text": {"title": "Text", "type": "string", "default": "hi", "x-order": 0},
                    "count": {
                        "title": "Count",
                        "type": "integer",
                        "default": 1,
                        "minimum": 1,
                        "maximum": 10,
                        "x-order": 1,
                    },
                    "color": {"allOf": [{"$ref": "#/components/schemas/color"}], "x-order": 2},
                    "seconds": {"title": "Seconds", "type": "number", "default": 0, "x-order": 3},
                },
            },
            "Output": {"title": "Output", "type": "string"},
            "color": {"title": "color", "enum": ["red", "green"], "type": "string"},
        }
    },
}


class FakeBuilder:
    """Builds nothing: every predictor gets FAKE_SCHEMA."""

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self.schema = schema or FAKE_SCHEMA
        self.builds = 0

    async def build(
        self, source_dir: Path, config: cogyaml.CogConfig, *, log: BuildLog | None = None
    ) -> BuildResult:
        self.builds += 1
        if log is not None:
            log("fake build")
        code = (source_dir / config.predict_ref.partition(":")[0]).read_text()
        if "FAIL_BUILD" in code:
            raise EnvBuildFailed("pip install failed: no matching distribution for nothing==0")
        if "HANG_BUILD" in code:  # until the gateway stops (as if it died mid-build)
            await asyncio.Event().wait()
        return BuildResult(source_dir, self.schema, config.concurrency or 1, "0.23.1")


@dataclass
class FakeHandle:
    id: str
    base_url: str
    running: bool = True
    settled: bool = False

    def is_running(self) -> bool:
        return self.running

    def log_tail(self) -> list[str]:
        return ["fake instance log line"]

    async def settle(self) -> None:
        self.settled = True

    async def next_output(self, timeout: float) -> None:
        await asyncio.sleep(timeout)  # it writes nothing


@dataclass
class FakeInstanceAPI:
    """Speaks like Cog: echoes ``text`` ``count`` times, sleeps ``seconds`` (cancellable,
    unless text == "stubborn"), fails when text == "fail", takes 0.2 s to take the prediction
    when text == "late", and drops cancels for 0.1 s after its start event when text ==
    "slow start". A killed instance drops its predictions' connections."""

    setup_error: str | None = None
    setup_until: float = 0.0
    cancels: dict[str, asyncio.Event] = field(default_factory=dict)
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    health_status: str = "READY"
    running: set[str] = field(default_factory=set)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    stubborn: set[str] = field(default_factory=set)
    not_found_delay: float = 0.0
    """How long a cancel for an unknown prediction takes to answer 404 (a slow answer)."""
    asked_to_cancel: list[str] = field(default_factory=list)
    lost_cancels: list[str] = field(default_factory=list)
    """Cancels it accepted and dropped: Cog does, for one that lands while it is still
    starting the prediction (here: text == "slow start")."""
    busy: int = 0
    """How many of the next predictions it refuses with a 409 (Cog does, now and then, with
    free slots); -1: all of them."""

    async def health(self) -> dict[str, Any]:
        if asyncio.get_running_loop().time() < self.setup_until:
            return {"status": "STARTING"}
        if self.setup_error:
            return {"status": "SETUP_FAILED", "setup": {"logs": self.setup_error}}
        return {"status": self.health_status}

    async def predict(
        self, prediction_id: str, input: dict[str, Any], on_event: EventHandler
    ) -> CogResult:
        if self.killed.is_set():
            raise InstanceUnavailable("connection refused")
        if self.busy:
            self.busy -= self.busy > 0
            raise InstanceBusy('{"error":"At capacity - all prediction slots busy"}')
        if input.get("text") == "late":  # Cog has not taken the POST yet: cancel finds nothing
            await asyncio.sleep(0.2)
        self.inputs.append(input)
        if input.get("text") == "stubborn":
            self.stubborn.add(prediction_id)
        canceled = self.cancels[prediction_id] = asyncio.Event()
        self.running.add(prediction_id)
        try:
            await on_event("start", {"id": prediction_id, "status": "processing"})
            if input.get("text") == "slow start":
                self.stubborn.add(prediction_id)  # a cancel now is accepted and lost
                await asyncio.sleep(0.1)
                self.stubborn.discard(prediction_id)
            await on_event("log", {"data": "echoing\n", "source": "stdout"})
            seconds = float(input.get("seconds", 0))
            if seconds:
                waits = [asyncio.ensure_future(e.wait()) for e in (canceled, self.killed)]
                _, pending = await asyncio.wait(
                    waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
                if self.killed.is_set():
                    raise InstanceUnavailable("server disconnected")
                if canceled.is_set():
                    return CogResult("canceled", logs="echoing\n", metrics={"predict_time": 0.01})
        finally:
            self.running.discard(prediction_id)
        text = str(input.get("text", "hi"))
        if text == "fail":
            return CogResult("failed", logs="echoing\n", error="ValueError: fail")
        output = text * int(input.get("count", 1))
        return CogResult("succeeded", output, "echoing\n", None, {"predict_time": 0.001})

    async def cancel(self, prediction_id: str) -> bool:
        self.asked_to_cancel.append(prediction_id)
        event = self.cancels.get(prediction_id)
        if event is None:
            await asyncio.sleep(self.not_found_delay)
            return False
        if prediction_id in self.stubborn:
            if prediction_id in self.running:
                self.lost_cancels.append(prediction_id)
            return True  # accepted, and ignored
        event.set()
        return True

    async def shutdown(self) -> None:
        return None

    def close(self) -> None:
        return None


class FakeRuntime:
    """Starts 'instances' that are FakeInstanceAPI objects; records what it was asked."""

    def __init__(self, *, setup_error: str | None = None, setup_seconds: float = 0.0) -> None:
        self.setup_error = setup_error
        self.setup_seconds = setup_seconds
        self.started: list[InstanceSpec] = []
        self.start_contexts: list[dict[str, Any]] = []  # structlog's context vars at each start
        self.stopping: list[str] = []  # stop() called
        self.stopped: list[str] = []  # stop() returned
        self.stop_gate: asyncio.Event | None = None
        """When set: stop() waits for it, as a process slow to exit would."""
        self.api: dict[str, FakeInstanceAPI] = {}
        self.handles: dict[str, FakeHandle] = {}
        self._ids = itertools.count(1)

    async def start(self, spec: InstanceSpec) -> InstanceHandle:
        self.started.append(spec)
        self.start_contexts.append(structlog.contextvars.get_contextvars())
        handle = FakeHandle(f"fake-{next(self._ids)}", "http://fake")
        self.handles[handle.id] = handle
        until = asyncio.get_running_loop().time() + self.setup_seconds
        self.api[handle.id] = FakeInstanceAPI(setup_error=self.setup_error, setup_until=until)
        return handle

    async def stop(self, handle: InstanceHandle, *, grace: float) -> None:
        assert isinstance(handle, FakeHandle)
        self.stopping.append(handle.id)
        if self.stop_gate is not None:
            await self.stop_gate.wait()
        handle.running = False
        self.api[handle.id].killed.set()
        self.stopped.append(handle.id)

    async def aclose(self) -> None:
        return None

    def client_for(self, handle: InstanceHandle) -> InstanceAPI:
        return self.api[handle.id]
