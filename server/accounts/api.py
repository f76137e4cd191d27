"""Routes for the calling account and the hardware this gateway offers."""

from typing import Any

from fastapi import APIRouter

from server.deps import CurrentAccount, ServicesDep

router = APIRouter(prefix="/v1")


@router.get("/account")
async def get_account(account: CurrentAccount) -> dict[str, Any]:
    return {
        "type": account.type,
        "username": account.username,
        "name": account.name,
        "github_url": None,
    }


@router.get("/hardware")
async def list_hardware(account: CurrentAccount, services: ServicesDep) -> list[dict[str, str]]:
    """The SKUs models and deployments may name: cpu and each GPU SKU this machine has."""
    return services.inventory.offered()
