"""Annotated dependency aliases shared by the routers.

Every dependency is ``async def``: FastAPI runs a plain ``def`` in a worker thread, a thread hop
per dependency per request on the hot path.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from server import errors, jsoncodec
from server.accounts.service import Account
from server.auth import current_account
from server.services import Services

UrlFor = Callable[[str], str]


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


BASE_URLS_KEPT = 64
_base_urls: dict[tuple[Any, ...], str] = {}


async def base_url(request: Request) -> str:
    """``PUBLIC_URL``, or the URL the client used up to the root path: remembered per (scheme,
    Host header, server, root path), since Starlette builds it anew for every request (a few
    per cent of a trivial prediction's CPU)."""
    services: Services = request.app.state.services
    configured = services.settings.public_url
    if configured:
        return configured.rstrip("/")
    scope = request.scope
    key = (
        scope.get("scheme"),
        request.headers.get("host"),
        scope.get("server"),
        scope.get("root_path"),
    )
    found = _base_urls.get(key)
    if found is None:
        if len(_base_urls) >= BASE_URLS_KEPT:  # the Host header is the client's to choose
            _base_urls.clear()
        found = _base_urls[key] = str(request.base_url).rstrip("/")
    return found


async def page_url(request: Request) -> UrlFor:
    """Absolute URL of this list endpoint with a cursor (clients follow it verbatim)."""
    root = await base_url(request)
    path = request.url.path

    def url_for(cursor: str) -> str:
        return f"{root}{path}?cursor={cursor}"

    return url_for


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, whatever Content-Type the client sent (curl's ``-d``
    says form-encoded). Malformed JSON -> 400; a non-object -> 422."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = jsoncodec.loads(raw)
    except ValueError:
        raise errors.BadRequest("Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise errors.InputValidationFailed(
            [{"type": "invalid_type", "field": "", "description": "Body must be a JSON object"}]
        )
    return data


CurrentAccount = Annotated[Account, Depends(current_account)]
ServicesDep = Annotated[Services, Depends(get_services)]
BaseUrl = Annotated[str, Depends(base_url)]
PageUrl = Annotated[UrlFor, Depends(page_url)]
JsonObject = Annotated[dict[str, Any], Depends(json_object)]


@dataclass(frozen=True)
class CreateCall:
    """What the create endpoints read from a request, in one dependency: the hot path, where
    FastAPI solving one dependency instead of seven is a measurable share of the CPU."""

    services: Services
    account: Account
    base: str
    data: dict[str, Any]
    prefer: str | None
    cancel_after: str | None


async def create_call(request: Request) -> CreateCall:
    account = await current_account(request)  # 401 before anything about the body
    return CreateCall(
        services=request.app.state.services,
        account=account,
        base=await base_url(request),
        data=await json_object(request),
        prefer=request.headers.get("prefer"),
        cancel_after=request.headers.get("cancel-after"),
    )


CreateCallDep = Annotated[CreateCall, Depends(create_call)]
