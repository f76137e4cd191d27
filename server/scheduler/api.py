"""Admin route: what the scheduler holds right now (pools, queues, instances, cold starts)."""

from typing import Any

from fastapi import APIRouter

from server import errors
from server.deps import CurrentAccount, ServicesDep

router = APIRouter(prefix="/v1")


@router.get("/admin/scheduler")
async def get_scheduler(account: CurrentAccount, services: ServicesDep) -> dict[str, Any]:
    """Each pool's queue, instances and recent cold starts, and the hardware in use."""
    if not account.is_admin:
        raise errors.Forbidden("The scheduler's state is for admins.")
    return services.scheduler.snapshot()
