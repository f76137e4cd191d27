"""Bearer/Token authentication: the ``Authorization`` header -> the calling ``Account``."""

from fastapi import Request

from server import errors
from server.accounts.service import Account, AccountService

SCHEMES = ("bearer", "token")


def token_from_header(value: str | None) -> str:
    if not value:
        raise errors.Unauthenticated()
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in SCHEMES or not token.strip():
        raise errors.Unauthenticated()
    return token.strip()


async def current_account(request: Request) -> Account:
    accounts: AccountService = request.app.state.services.accounts
    return await accounts.authenticate(token_from_header(request.headers.get("authorization")))
