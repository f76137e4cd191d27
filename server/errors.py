"""The one error tree of the API, rendered as RFC 7807 problem+json in one place.

    APIError                      (500, opaque)
     ├── BadRequest               400  malformed JSON, unreadable body
     ├── Unauthenticated          401  missing or wrong token
     ├── Forbidden                403  writing to another account's namespace
     ├── NotFound                 404  unknown or foreign resource, unknown route
     ├── MethodNotAllowed         405
     ├── Conflict                 409  duplicate name, version in use
     ├── PayloadTooLarge          413  an upload over the size limit
     ├── InvalidVersion           422  "Invalid version or not permitted"
     ├── InputValidationFailed    422  carries ``invalid_fields``
     ├── Throttled                429  carries ``Retry-After``
     └── ServiceUnavailable       503

Services raise these; routes never build HTTP errors themselves. Each class's docstring is its
default ``detail``.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.jsoncodec import JSONResponse

log = structlog.get_logger("server.errors")

PROBLEM_JSON = "application/problem+json"


class APIError(Exception):
    """Internal server error."""

    status_code: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        self.detail = detail or (type(self).__doc__ or self.title).strip()
        self.headers = headers or {}
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        return {"title": self.title, "detail": self.detail, "status": self.status_code}


class BadRequest(APIError):
    """The request could not be read."""

    status_code = 400
    title = "Bad Request"


class Unauthenticated(APIError):
    """You did not pass a valid authentication token"""

    status_code = 401
    title = "Unauthenticated"


class Forbidden(APIError):
    """You do not have permission to do that."""

    status_code = 403
    title = "Forbidden"


class PayloadTooLarge(APIError):
    """The request body is too large."""

    status_code = 413
    title = "Payload Too Large"


class NotFound(APIError):
    """Not found."""

    status_code = 404
    title = "Not Found"


class MethodNotAllowed(APIError):
    """Method not allowed."""

    status_code = 405
    title = "Method Not Allowed"


class Conflict(APIError):
    """The request conflicts with the resource's current state."""

    status_code = 409
    title = "Conflict"


class InvalidVersion(APIError):
    """The specified version does not exist (or perhaps you don't have permission to use it?)"""

    status_code = 422
    title = "Invalid version or not permitted"


class InputValidationFailed(APIError):
    """Input validation failed."""

    status_code = 422
    title = "Input validation failed"

    def __init__(self, invalid_fields: list[dict[str, str]]):
        self.invalid_fields = invalid_fields
        detail = "".join(f"- {f['field']}: {f['description']}\n" for f in invalid_fields)
        super().__init__(detail)

    def body(self) -> dict[str, Any]:
        return {**super().body(), "invalid_fields": self.invalid_fields}


class Throttled(APIError):
    """Request was throttled."""

    status_code = 429
    title = "Too Many Requests"


class ServiceUnavailable(APIError):
    """The service is not ready to take this request."""

    status_code = 503
    title = "Service Unavailable"


def problem(error: APIError) -> JSONResponse:
    return JSONResponse(
        error.body(), status_code=error.status_code, headers=error.headers, media_type=PROBLEM_JSON
    )


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    429: Throttled,
    503: ServiceUnavailable,
}


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) if parts else ""


def invalid_fields(errors: Sequence[Any]) -> "InputValidationFailed":
    """pydantic error dicts -> a 422 with Replicate's ``invalid_fields``."""
    fields = [
        {
            "type": str(e.get("type", "invalid")),
            "field": _field_name(tuple(e.get("loc", ()))),
            "description": str(e.get("msg", "is invalid")),
        }
        for e in errors
    ]
    return InputValidationFailed(fields)


def request_validation_error(exc: RequestValidationError) -> APIError:
    """Map FastAPI's body/query validation errors to 400 (unreadable) or 422 (invalid)."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return BadRequest("Request body is not valid JSON.")
    return invalid_fields(errors)


def api_error_response(path: str, exc: APIError) -> JSONResponse:
    if type(exc) is APIError:
        log.error("unhandled_api_error", path=path, detail=exc.detail)
    return problem(exc)


def unexpected_error_response(method: str, path: str) -> JSONResponse:
    """A bug: logged with its traceback (call it in the ``except`` block), a bare 500 problem
    for the client."""
    log.exception("unhandled_exception", path=path, method=method)
    return problem(APIError())


def install_error_handlers(app: FastAPI) -> None:
    """Register the only exception handlers: every error leaves as problem+json."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return api_error_response(request.url.path, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem(request_validation_error(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        cls = _BY_STATUS.get(exc.status_code)
        if cls is None:
            return JSONResponse(
                {"title": "Error", "detail": str(exc.detail), "status": exc.status_code},
                status_code=exc.status_code,
                media_type=PROBLEM_JSON,
            )
        error = cls(None if cls is NotFound else str(exc.detail), headers=dict(exc.headers or {}))
        return problem(error)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(request.method, request.url.path)

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
