"""Routes: the account's webhook signing secret (Replicate's ``webhooks.default.secret``) and,
for admins, the log of delivery attempts."""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query

from server import errors
from server.deps import BaseUrl, CurrentAccount, ServicesDep
from server.webhooks.schemas import render_attempt

router = APIRouter(prefix="/v1")


@router.get("/webhooks/default/secret")
async def get_default_secret(account: CurrentAccount, services: ServicesDep) -> dict[str, str]:
    return {"key": await services.webhooks.secret(account)}


@router.get("/admin/webhooks")
async def list_webhook_attempts(
    account: CurrentAccount,
    services: ServicesDep,
    base: BaseUrl,
    prediction_id: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """Every delivery attempt (of one prediction), newest first, a page at a time (admins)."""
    if not account.is_admin:
        raise errors.Forbidden("Webhook delivery attempts are for admins.")

    def url_for(next_cursor: str) -> str:
        query = {"prediction_id": prediction_id} if prediction_id else {}
        return f"{base}/v1/admin/webhooks?{urlencode({**query, 'cursor': next_cursor})}"

    page, states = await services.webhooks.attempts(prediction_id, cursor=cursor, url_for=url_for)
    return page.body([render_attempt(row, states.get(row.delivery_id)) for row in page.results])
