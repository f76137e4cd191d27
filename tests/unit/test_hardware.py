"""The hardware inventory: nvidia-smi detection, SKU names, and device assignment."""

from pathlib import Path

from server.hardware import CPU, GpuDevice, HardwareSettings, Inventory, detect_gpus, sku_for


def fake_nvidia_smi(tmp_path: Path, output: str, code: int = 0) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'OUT'\n{output}\nOUT\nexit {code}\n")
    script.chmod(0o755)
    return str(script)


def test_detects_gpus_from_nvidia_smi(tmp_path: Path) -> None:
    binary = fake_nvidia_smi(
        tmp_path, "0, NVIDIA H100 80GB HBM3\n1, Tesla T4\n2, NVIDIA RTX 6000 Ada"
    )
    gpus = detect_gpus(binary)
    assert [(g.index, g.sku) for g in gpus] == [
        (0, "gpu-h100"),
        (1, "gpu-t4"),
        (2, "gpu-rtx-6000-ada"),
    ]
    assert gpus[0].name == "NVIDIA H100 80GB HBM3"


def test_a_failing_nvidia_smi_means_no_gpus(tmp_path: Path) -> None:
    assert detect_gpus(fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed", code=9)) == []
    assert sku_for("NVIDIA A100-SXM4-80GB") == "gpu-a100"


def test_each_instance_gets_its_own_gpu_until_none_is_left() -> None:
    gpus = [GpuDevice(index=i, sku="gpu-a100") for i in range(3)] + [
        GpuDevice(index=3, sku="gpu-t4")
    ]
    inventory = Inventory(HardwareSettings(cpu_instances=1), gpus)
    assert inventory.skus() == [CPU, "gpu-a100", "gpu-t4"]
    held = [inventory.acquire("gpu-a100") for _ in range(3)]
    assert sorted(a.devices[0] for a in held if a) == [0, 1, 2]
    assert inventory.acquire("gpu-a100") is None
    assert inventory.acquire("gpu-h100") is None, "a SKU this machine lacks"
    assert held[1] is not None
    inventory.release(held[1])
    again = inventory.acquire("gpu-a100")
    assert again is not None
    assert again.environment() == {"CUDA_VISIBLE_DEVICES": str(held[1].devices[0])}
    cpu = inventory.acquire(CPU)
    assert cpu is not None
    assert cpu.environment() == {"CUDA_VISIBLE_DEVICES": ""}
    assert inventory.acquire(CPU) is None, "cpu_instances is a cap too"


def test_sharing_and_multi_gpu_instances_when_configured() -> None:
    gpus = [GpuDevice(index=i, sku="gpu-l40s") for i in range(2)]
    shared = Inventory(HardwareSettings(instances_per_gpu=2), gpus)
    devices = [shared.acquire("gpu-l40s") for _ in range(4)]
    assert sorted(a.devices for a in devices if a) == [(0,), (0,), (1,), (1,)]
    assert shared.acquire("gpu-l40s") is None
    pairs = Inventory(HardwareSettings(gpus_per_instance=2), gpus)
    both = pairs.acquire("gpu-l40s")
    assert both is not None
    assert both.environment() == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert pairs.acquire("gpu-l40s") is None
