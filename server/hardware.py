"""This machine's hardware: the SKUs models and deployments may name, and who holds what.

The inventory comes from settings (``COGWAY_HARDWARE__GPUS``) or, when none are declared,
from ``nvidia-smi``. Each GPU instance gets its own device(s) through
``CUDA_VISIBLE_DEVICES``; CPU instances get an empty one, so they never touch a GPU. A GPU
holds one instance at a time unless ``instances_per_gpu`` says more.
"""

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from pydantic import BaseModel

log = structlog.get_logger("server.hardware")

CPU = "cpu"
NVIDIA_SMI_TIMEOUT_S = 10.0
KNOWN_GPUS = (  # nvidia-smi name fragment -> SKU (Replicate's names where they exist)
    ("H200", "gpu-h200"),
    ("H100", "gpu-h100"),
    ("A100", "gpu-a100"),
    ("L40S", "gpu-l40s"),
    ("A40", "gpu-a40"),
    ("T4", "gpu-t4"),
)


class GpuDevice(BaseModel):
    index: int
    sku: str
    name: str = ""


class HardwareSettings(BaseModel):
    """What this machine offers to instances."""

    cpu_instances: int = 32
    """How many CPU instances may run at once, over all versions."""
    gpus: list[GpuDevice] | None = None
    """The GPUs to use; default: what ``nvidia-smi`` lists (none without it)."""
    gpus_per_instance: int = 1
    instances_per_gpu: int = 1
    """More than 1 lets instances share a GPU (off by default: each gets its own)."""


def sku_for(name: str) -> str:
    for fragment, sku in KNOWN_GPUS:
        if fragment in name.upper():
            return sku
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("nvidia", "")).strip("-")
    return f"gpu-{slug or 'unknown'}"


def detect_gpus(nvidia_smi: str | None = None) -> list[GpuDevice]:
    """The GPUs ``nvidia-smi`` lists (an empty list when it is missing or fails)."""
    binary = nvidia_smi or shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        out = subprocess.run(
            [binary, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia_smi_failed", error=str(exc))
        return []
    devices = []
    for line in out.splitlines():
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            devices.append(
                GpuDevice(index=int(index), sku=sku_for(name.strip()), name=name.strip())
            )
    return devices


@dataclass(frozen=True)
class Allocation:
    sku: str
    devices: tuple[int, ...] = ()

    def environment(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in self.devices)}


class Inventory:
    def __init__(self, settings: HardwareSettings, gpus: list[GpuDevice]) -> None:
        self.settings = settings
        self.gpus = sorted(gpus, key=lambda g: g.index)
        self._cpu_used = 0
        self._gpu_used: Counter[int] = Counter()
        self.on_release: Callable[[], None] = lambda: None
        """Called when capacity frees up (the scheduler wakes pools that wait for it)."""

    @classmethod
    def from_settings(cls, settings: HardwareSettings) -> "Inventory":
        gpus = settings.gpus if settings.gpus is not None else detect_gpus()
        return cls(settings, gpus)

    def offered(self) -> list[dict[str, str]]:
        """``GET /v1/hardware``: cpu, then each GPU SKU this machine has."""
        out = [{"sku": CPU, "name": "CPU"}]
        seen: set[str] = set()
        for gpu in self.gpus:
            if gpu.sku not in seen:
                seen.add(gpu.sku)
                out.append({"sku": gpu.sku, "name": gpu.name or gpu.sku})
        return out

    def skus(self) -> list[str]:
        return [h["sku"] for h in self.offered()]

    def _free_gpus(self, sku: str) -> list[int]:
        cap = self.settings.instances_per_gpu
        return [g.index for g in self.gpus if g.sku == sku and self._gpu_used[g.index] < cap]

    def can_place(self, sku: str) -> bool:
        """Whether one more instance of ``sku`` fits (a SKU this machine lacks never does)."""
        if sku == CPU:
            return self._cpu_used < self.settings.cpu_instances
        if not any(g.sku == sku for g in self.gpus):
            return False
        return len(self._free_gpus(sku)) >= self.settings.gpus_per_instance

    def acquire(self, sku: str) -> Allocation | None:
        if not self.can_place(sku):
            return None
        if sku == CPU:
            self._cpu_used += 1
            return Allocation(CPU)
        # Least-used first, so shared GPUs fill evenly.
        free = sorted(self._free_gpus(sku), key=lambda i: (self._gpu_used[i], i))
        devices = tuple(sorted(free[: self.settings.gpus_per_instance]))
        for index in devices:
            self._gpu_used[index] += 1
        return Allocation(sku, devices)

    def release(self, allocation: Allocation) -> None:
        if allocation.sku == CPU:
            self._cpu_used = max(0, self._cpu_used - 1)
        for index in allocation.devices:
            self._gpu_used[index] = max(0, self._gpu_used[index] - 1)
        self.on_release()

    @property
    def cpu_used(self) -> int:
        return self._cpu_used

    def gpu_load(self) -> list[tuple[GpuDevice, int]]:
        """Each GPU with the number of instances on it."""
        return [(g, self._gpu_used[g.index]) for g in self.gpus]

    def usage(self) -> dict[str, object]:
        return {
            "cpu_instances": {"used": self._cpu_used, "capacity": self.settings.cpu_instances},
            "gpus": [
                {"index": g.index, "sku": g.sku, "instances": count} for g, count in self.gpu_load()
            ],
        }
