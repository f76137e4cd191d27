"""Admin route: usage totals read back from the sink (the same objects billing reads)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from server import errors
from server.deps import CurrentAccount, ServicesDep
from server.metering.usage import Dimension, usage_report

router = APIRouter(prefix="/v1")


@router.get("/admin/usage")
async def get_usage(
    account: CurrentAccount,
    services: ServicesDep,
    by: Annotated[Dimension, Query()] = "model",
) -> dict[str, Any]:
    """Totals per account, model, hardware or day, with the grand total (admins only)."""
    if not account.is_admin:
        raise errors.Forbidden("Usage totals are for admins.")
    if services.metering is None:
        raise errors.NotFound("Metering is switched off (COGWAY_METERING__ENABLED=false).")
    return await usage_report(services.metering.sink, by)
