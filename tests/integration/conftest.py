"""Integration tier: the real app with real Cog subprocesses (shared venv in .cache/envs)."""

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.app import Startup, create_app
from server.runtime.local import LocalRuntime
from server.services import Services, build_services
from tests.conftest import FIXTURES, make_settings, serving

pytestmark = pytest.mark.integration

SERVED = ["echo", "typed", "predict_raises", "setup_fails", "slow", "crash"]


@dataclass
class Live:
    client: httpx.AsyncClient
    services: Services
    runtime: LocalRuntime

    async def run(self, model: str, input: dict[str, object], **headers: str) -> dict[str, object]:
        resp = await self.client.post(
            f"/v1/models/test/{model}/predictions",
            json={"input": input},
            headers={"Prefer": "wait=30", **headers},
        )
        assert resp.status_code == 201, resp.text
        body: dict[str, object] = resp.json()
        return body


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    """One gateway (in-process, over ASGI) serving every one-behaviour predictor for real."""
    settings = make_settings(tmp_path_factory.mktemp("live"))
    runtime = LocalRuntime()
    services = build_services(settings, runtime=runtime)
    startup = Startup(models=[(f"test/{name}", FIXTURES / name) for name in SERVED], warm=False)
    async with serving(create_app(services, startup)) as client:
        yield Live(client, services, runtime)
