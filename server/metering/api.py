"""Admin route: usage totals read back from the sink (the same objects billing reads)."""

from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Query

from server import errors
from server.deps import CurrentAccount, ServicesDep
from server.metering.usage import Dimension, MixedCurrencies, usage_report

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
    try:
        return await usage_report(services.metering.sink, by)
    except MixedCurrencies as exc:
        raise errors.Conflict(str(exc)) from None
    except (OSError, BotoCoreError, ClientError) as exc:
        raise errors.ServiceUnavailable(f"Cannot read usage from the sink: {exc}") from None
