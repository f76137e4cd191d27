"""Readiness is polled as the instance logs, not only on a timer: Cog has no readiness push,
but it writes a line as it starts listening and as setup completes."""

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from server.runtime.local import LocalInstance
from server.scheduler import instance as instance_module
from server.scheduler.instance import Instance, InstanceState

pytestmark = pytest.mark.anyio

NEVER_S = 60.0  # the timer alone would take this long


@dataclass
class LoggingHandle:
    """An instance handle whose log lines the test writes."""

    id: str = "h-1"
    base_url: str = "http://fake"
    output: asyncio.Event = field(default_factory=asyncio.Event)

    def is_running(self) -> bool:
        return True

    def log_tail(self) -> list[str]:
        return []

    async def next_output(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.output.wait()
        except TimeoutError:
            pass
        self.output.clear()


@dataclass
class SlowToBoot:
    """/health-check says STARTING until ``ready``; counts the polls."""

    ready: bool = False
    polls: int = 0

    async def health(self) -> dict[str, Any]:
        self.polls += 1
        return {"status": "READY" if self.ready else "STARTING"}

    def close(self) -> None:
        return None


async def test_a_log_line_makes_readiness_polled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instance_module, "HEALTH_POLL_S", NEVER_S)
    handle, client = LoggingHandle(), SlowToBoot()
    instance = Instance(handle, client, slots=1)  # type: ignore[arg-type]
    waiting = asyncio.create_task(instance.wait_ready(timeout=2 * NEVER_S))
    await asyncio.sleep(0.05)
    assert client.polls == 1
    assert not waiting.done()
    client.ready = True
    handle.output.set()  # "Setup complete, now accepting requests"
    await asyncio.wait_for(waiting, timeout=5.0)
    assert instance.state is InstanceState.READY
    assert client.polls == 2


async def test_lines_that_change_nothing_are_polled_at_most_every_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A setup() that prints without pause does not turn into a stream of health checks."""
    monkeypatch.setattr(instance_module, "HEALTH_POLL_S", NEVER_S)
    handle, client = LoggingHandle(), SlowToBoot()
    instance = Instance(handle, client, slots=1)  # type: ignore[arg-type]
    waiting = asyncio.create_task(instance.wait_ready(timeout=2 * NEVER_S))
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.2
    while loop.time() < end:
        handle.output.set()
        await asyncio.sleep(0)
    waiting.cancel()
    assert 1 < client.polls <= 0.2 / instance_module.POLL_GAP_S + 2


async def spawn(script: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_local_instance_reports_each_line_and_its_exit() -> None:
    # One line on stderr per line on stdin; exits when stdin closes.
    proc = await spawn("import sys\nfor line in sys.stdin: print(line, end='', file=sys.stderr)")
    assert proc.stdin is not None
    instance = LocalInstance(proc, port=0, version_id="v" * 32)
    instance.start_reading()
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await instance.next_output(0.1)  # nothing written: the timeout
        assert loop.time() - began >= 0.1
        proc.stdin.write(b"Setup complete\n")
        await asyncio.wait_for(instance.next_output(NEVER_S), timeout=5.0)
        assert instance.log_tail() == ["Setup complete"]
        proc.stdin.close()  # it exits: that is news too
        await asyncio.wait_for(instance.next_output(NEVER_S), timeout=5.0)
        await asyncio.wait_for(proc.wait(), timeout=5.0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
