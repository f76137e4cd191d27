"""Route for the account's webhook signing secret (Replicate's ``webhooks.default.secret``)."""

from fastapi import APIRouter

from server.deps import CurrentAccount, ServicesDep

router = APIRouter(prefix="/v1")


@router.get("/webhooks/default/secret")
async def get_default_secret(account: CurrentAccount, services: ServicesDep) -> dict[str, str]:
    return {"key": await services.webhooks.secret(account)}
