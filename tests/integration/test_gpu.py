"""GPU assignment with real Cog processes and the real CUDA driver.

The first test runs everywhere: a CPU instance is started with an empty
``CUDA_VISIBLE_DEVICES``, so the driver shows it no GPU. The second needs ``nvidia-smi`` (a GPU
machine; ``make test-gpu``): the inventory comes from it, a deployment on the detected SKU gets
one GPU, the very one ``nvidia-smi`` names (compared by UUID), and never shares it.
"""

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.app import Startup, create_app
from server.hardware import sku_for
from server.runtime.local import LocalRuntime
from server.services import build_services
from tests.conftest import FIXTURES, make_settings, serving

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

NVIDIA_SMI = shutil.which("nvidia-smi")
needs_gpu = pytest.mark.skipif(NVIDIA_SMI is None, reason="no nvidia-smi: not a GPU machine")


def predictor(tmp_path: Path) -> Path:
    """The gpuinfo fixture, built for this interpreter (a GPU machine may lack Python 3.11)."""
    target = tmp_path / "gpuinfo"
    shutil.copytree(FIXTURES / "gpuinfo", target)
    config = target / "cog.yaml"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    config.write_text(config.read_text().replace('"3.11"', f'"{version}"'))
    return target


@asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path / "data")
    services = build_services(settings, runtime=LocalRuntime())
    startup = Startup(models=[("test/gpuinfo", predictor(tmp_path))], warm=False)
    async with serving(create_app(services, startup), timeout=300) as client:
        yield client


async def run(client: httpx.AsyncClient, path: str, seconds: float = 0) -> dict[str, Any]:
    resp = await client.post(
        path, json={"input": {"seconds": seconds}}, headers={"Prefer": "wait=60"}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "succeeded", body
    seen: dict[str, Any] = json.loads(body["output"])
    return seen


async def test_a_cpu_instance_is_shown_no_gpu(tmp_path: Path) -> None:
    async with gateway(tmp_path) as client:
        seen = await run(client, "/v1/models/test/gpuinfo/predictions")
    assert seen["cuda_visible_devices"] == ""
    assert seen["devices"] == []


def nvidia_smi_gpus() -> dict[int, tuple[str, str]]:
    """index -> (name, UUID), as nvidia-smi lists them."""
    assert NVIDIA_SMI is not None
    listed = subprocess.run(
        [NVIDIA_SMI, "--query-gpu=index,name,uuid", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        int(index): (name.strip(), uuid.strip())
        for index, name, uuid in (line.split(",") for line in listed.strip().splitlines())
    }


@needs_gpu
async def test_a_gpu_deployment_gets_its_own_gpu_from_nvidia_smi(tmp_path: Path) -> None:
    gpus = nvidia_smi_gpus()
    sku = sku_for(next(iter(gpus.values()))[0])
    async with gateway(tmp_path) as client:
        offered = [h["sku"] for h in (await client.get("/v1/hardware")).json()]
        assert sku in offered, offered
        model = (await client.get("/v1/models/test/gpuinfo")).json()
        deployment = {
            "model": "test/gpuinfo",
            "version": model["latest_version"]["id"],
            "min_instances": 0,
            "max_instances": len(gpus) + 1,
        }
        lacking = await client.post(
            "/v1/deployments", json={**deployment, "name": "nope", "hardware": "gpu-nonexistent"}
        )
        assert lacking.status_code == 422, lacking.text
        made = await client.post(
            "/v1/deployments", json={**deployment, "name": "gpu", "hardware": sku}
        )
        assert made.status_code == 200, made.text
        # One more prediction at once than there are GPUs: each instance holds one GPU,
        # and the last prediction waits for a GPU rather than share one.
        path = "/v1/deployments/admin/gpu/predictions"
        seen = await asyncio.gather(*(run(client, path, seconds=2) for _ in range(len(gpus) + 1)))
        cpu = await run(client, "/v1/models/test/gpuinfo/predictions")
    for each in seen:
        (index,) = [int(i) for i in each["cuda_visible_devices"].split(",")]
        assert len(each["devices"]) == 1, each
        (device,) = each["devices"]
        assert (device["name"], device["uuid"]) == gpus[index], "the GPU nvidia-smi names"
    by_instance = {each["pid"]: each["cuda_visible_devices"] for each in seen}
    assert len(by_instance) == len(gpus), "one instance per GPU, none started to share one"
    assert sorted(by_instance.values()) == sorted(str(i) for i in gpus)
    assert cpu["devices"] == [], f"a CPU instance on a GPU machine sees none: {cpu['reason']}"
