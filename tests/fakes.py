"""Fakes behind the same small interfaces as the real parts: runtime, instance API, builder."""

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.runtime import cogyaml
from server.runtime.base import InstanceHandle, InstanceSpec
from server.runtime.builder import BuildLog, BuildResult
from server.runtime.cog_client import CogResult, EventHandler, InstanceAPI
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

    def is_running(self) -> bool:
        return self.running

    def log_tail(self) -> list[str]:
        return ["fake instance log line"]


@dataclass
class FakeInstanceAPI:
    """Speaks like Cog: echoes ``text`` ``count`` times, sleeps ``seconds`` (cancellable),
    fails when text == "fail"."""

    setup_error: str | None = None
    cancels: dict[str, asyncio.Event] = field(default_factory=dict)

    async def health(self) -> dict[str, Any]:
        if self.setup_error:
            return {"status": "SETUP_FAILED", "setup": {"logs": self.setup_error}}
        return {"status": "READY"}

    async def predict(
        self, prediction_id: str, input: dict[str, Any], on_event: EventHandler
    ) -> CogResult:
        canceled = self.cancels[prediction_id] = asyncio.Event()
        await on_event("start", {"id": prediction_id, "status": "processing"})
        await on_event("log", {"data": "echoing\n", "source": "stdout"})
        seconds = float(input.get("seconds", 0))
        if seconds:
            try:
                await asyncio.wait_for(canceled.wait(), seconds)
                return CogResult("canceled", logs="echoing\n", metrics={"predict_time": 0.01})
            except TimeoutError:
                pass
        text = str(input.get("text", "hi"))
        if text == "fail":
            return CogResult("failed", logs="echoing\n", error="ValueError: fail")
        output = text * int(input.get("count", 1))
        return CogResult("succeeded", output, "echoing\n", None, {"predict_time": 0.001})

    async def cancel(self, prediction_id: str) -> bool:
        event = self.cancels.get(prediction_id)
        if event is None:
            return False
        event.set()
        return True

    async def shutdown(self) -> None:
        return None


class FakeRuntime:
    """Starts 'instances' that are FakeInstanceAPI objects; records what it was asked."""

    def __init__(self, *, setup_error: str | None = None) -> None:
        self.setup_error = setup_error
        self.started: list[InstanceSpec] = []
        self.stopped: list[str] = []
        self.api: dict[str, FakeInstanceAPI] = {}
        self._ids = itertools.count(1)

    async def start(self, spec: InstanceSpec) -> InstanceHandle:
        self.started.append(spec)
        handle = FakeHandle(f"fake-{next(self._ids)}", "http://fake")
        self.api[handle.id] = FakeInstanceAPI(setup_error=self.setup_error)
        return handle

    async def stop(self, handle: InstanceHandle, *, grace: float) -> None:
        assert isinstance(handle, FakeHandle)
        handle.running = False
        self.stopped.append(handle.id)

    async def aclose(self) -> None:
        return None

    def client_for(self, handle: InstanceHandle) -> InstanceAPI:
        return self.api[handle.id]
