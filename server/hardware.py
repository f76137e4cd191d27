"""The hardware this gateway offers: the SKUs models and deployments may name.

Today every instance runs on this machine's CPU; GPU inventory (nvidia-smi, CUDA_VISIBLE_DEVICES
assignment) arrives with the scheduler work.
"""

HARDWARE: list[dict[str, str]] = [{"sku": "cpu", "name": "CPU"}]


def hardware_skus() -> list[str]:
    return [h["sku"] for h in HARDWARE]
