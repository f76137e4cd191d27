"""Admin routes: what the scheduler holds right now (pools, queues, instances, cold starts),
as JSON and in Prometheus' text format."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from server import errors
from server.deps import CurrentAccount, ServicesDep
from server.scheduler import metrics

router = APIRouter(prefix="/v1")
metrics_router = APIRouter()


@router.get("/admin/scheduler")
async def get_scheduler(account: CurrentAccount, services: ServicesDep) -> dict[str, Any]:
    """Each pool's queue, instances and recent cold starts, and the hardware in use."""
    if not account.is_admin:
        raise errors.Forbidden("The scheduler's state is for admins.")
    return services.scheduler.snapshot()


@metrics_router.get("/metrics", include_in_schema=False)
async def get_metrics(account: CurrentAccount, services: ServicesDep) -> PlainTextResponse:
    """Prometheus text format (scrape with the admin token as a bearer token)."""
    if not account.is_admin:
        raise errors.Forbidden("Metrics are for admins.")
    scheduler = services.scheduler
    body = metrics.render(scheduler.pools.values(), scheduler.inventory)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
