"""What admins see of the scheduler: each pool as JSON (``pool_view``, in
``GET /v1/admin/scheduler``), and in Prometheus' text format (``GET /metrics``): queues, slots,
instances, cold starts and outcomes per pool, and the hardware in use."""

from collections.abc import Iterable
from typing import Any

from server.hardware import Inventory
from server.scheduler.pool import Pool

HELP = {
    "cogway_queue_depth": ("gauge", "Predictions waiting for a slot."),
    "cogway_running": ("gauge", "Predictions running on an instance."),
    "cogway_instances": ("gauge", "Instances by state."),
    "cogway_slots": ("gauge", "Slots of live instances (concurrency x instances)."),
    "cogway_instance_boots_total": ("counter", "Instances that became ready."),
    "cogway_cold_start_seconds": ("summary", "Spawn to READY, per boot."),
    "cogway_instances_lost_total": ("counter", "Instances killed: crash, dead, unhealthy."),
    "cogway_busy_retries_total": ("counter", "409s from an instance with a free slot, retried."),
    "cogway_predictions_total": ("counter", "Predictions that ran to an end, by status."),
    "cogway_cpu_instances_used": ("gauge", "CPU instances placed on this machine."),
    "cogway_gpu_instances": ("gauge", "Instances on each GPU."),
}


def pool_view(pool: Pool) -> dict[str, Any]:
    return {
        "key": pool.placement.key,
        "model": pool.version.model,
        "version": pool.version.id,
        "deployment": pool.placement.deployment,
        "hardware": pool.placement.hardware,
        "min_instances": pool.planner.policy.min_instances,
        "max_instances": pool.planner.policy.max_instances,
        "slots_per_instance": pool.planner.policy.slots,
        "queued": pool.queued,
        "running": pool.planner.running(),
        "broken": pool.planner.broken,
        "instances": [
            {
                "id": i.id,
                "state": i.state.value,
                "in_flight": len(i.in_flight),
                "cold_start_s": round(i.boot_s, 3) if i.booted_at is not None else None,
            }
            for i in pool.listed()
        ],
        "cold_starts_s": [round(s, 3) for s in pool.stats.recent_cold_starts],
    }


def _labels(**values: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in values.items()) + "}"


def render(pools: Iterable[Pool], inventory: Inventory) -> str:
    samples: dict[str, list[str]] = {name: [] for name in HELP}

    def add(name: str, labels: str, value: float) -> None:
        metric = name.removesuffix("_sum").removesuffix("_count")
        samples[metric].append(f"{name}{labels} {value:g}")

    for pool in pools:
        stats = pool.stats
        base = {
            "pool": pool.placement.key,
            "model": pool.version.model,
            "deployment": pool.placement.deployment or "",
            "hardware": pool.placement.hardware,
        }
        labels = _labels(**base)
        add("cogway_queue_depth", labels, pool.queued)
        add("cogway_running", labels, pool.planner.running())
        add("cogway_slots", labels, pool.planner.policy.slots * len(pool.planner.live()))
        states: dict[str, int] = {}
        for instance in pool.listed():
            states[instance.state.value] = states.get(instance.state.value, 0) + 1
        for state, count in sorted(states.items()):
            add("cogway_instances", _labels(**base, state=state), count)
        add("cogway_instance_boots_total", labels, stats.boots)
        add("cogway_cold_start_seconds_sum", labels, round(stats.cold_start_seconds, 6))
        add("cogway_cold_start_seconds_count", labels, stats.boots)
        add("cogway_instances_lost_total", labels, stats.lost)
        add("cogway_busy_retries_total", labels, stats.busy_retries)
        for status, count in sorted(stats.outcomes.items()):
            add("cogway_predictions_total", _labels(**base, status=status), count)
    add("cogway_cpu_instances_used", "", inventory.cpu_used)
    for gpu, count in inventory.gpu_load():
        add("cogway_gpu_instances", _labels(index=str(gpu.index), sku=gpu.sku), count)
    lines: list[str] = []
    for name, (kind, text) in HELP.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *samples[name]]
    return "\n".join(lines) + "\n"
