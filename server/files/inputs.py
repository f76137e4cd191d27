"""File inputs: every ``format: uri`` input becomes something the instance can read by itself.

* ``data:`` URIs pass through (Cog decodes them).
* Our own file URLs, ``…/v1/files/{id}`` of the caller's account (what both SDKs send after
  uploading) or a download capability URL, become the file's capability URL on the gateway's
  internal address: Cog downloads it without a token.
* Any other ``http(s)`` URL is fetched by the gateway (size and time limits; loopback, private
  and link-local addresses refused unless ``allow_private_urls``), stored as a file of the caller
  (``source: input``, not listed), and handed on as its capability URL: the instance never
  reaches out to arbitrary hosts itself.

Local paths and other schemes never get here: ``server.predictions.validation`` refuses them.
"""

import asyncio
import ipaddress
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import structlog

from server import errors, urls
from server.files.service import FilesService, StoredFile
from server.models.service import VersionInfo

log = structlog.get_logger("server.files.inputs")

OWN_PATH = re.compile(r"/v1/files/(?P<id>[^/]+)(?:/download/(?P<token>[^/]+)(?:/[^/]*)?)?/?")
USER_AGENT = "cogway (file input)"


class Refused(Exception):
    """One file input that cannot be used; the message is the ``invalid_fields`` description."""


def uri_fields(openapi_schema: dict[str, Any]) -> frozenset[str]:
    """Inputs that are files (``cog.Path``/``cog.File``, alone or in a list)."""
    schemas = openapi_schema.get("components", {}).get("schemas", {})
    properties = schemas.get("Input", {}).get("properties", {})
    return frozenset(
        name
        for name, prop in properties.items()
        if prop.get("format") == "uri" or prop.get("items", {}).get("format") == "uri"
    )


def _origin(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


class FileInputs:
    """The ``PredictionService.resolve_inputs`` seam: call it on the validated input."""

    def __init__(
        self, files: FilesService, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.files = files
        self.settings = files.settings.files
        self.transport = transport
        self._fields: dict[str, frozenset[str]] = {}

    async def resolve(
        self,
        account_id: int,
        version: VersionInfo,
        input: dict[str, Any],
        base_url: str | None,
    ) -> dict[str, Any]:
        """``input`` with every file URL replaced; 422 listing each input that cannot be used."""
        fields = self._fields.get(version.id)
        if fields is None:
            fields = self._fields[version.id] = uri_fields(version.openapi_schema)
        bases = {self.files.gateway_url, self.files.public_url, *([base_url] if base_url else [])}
        resolved = dict(input)
        problems = []
        for name in sorted(fields & input.keys()):
            value = input[name]
            try:
                if isinstance(value, list):
                    resolved[name] = [await self._one(account_id, v, bases) for v in value]
                else:
                    resolved[name] = await self._one(account_id, value, bases)
            except Refused as exc:
                problems.append(
                    {"type": "invalid_file", "field": f"input.{name}", "description": str(exc)}
                )
        if problems:
            raise errors.InputValidationFailed(problems)
        return resolved

    async def _one(self, account_id: int, value: Any, bases: set[str]) -> Any:
        if not isinstance(value, str) or value.startswith("data:"):
            return value
        own = self._own_path(value, bases)
        if own is not None:
            f = await self._own_file(account_id, own)
        else:
            f = await self._fetch(account_id, value)
        return self.files.gateway_url + f.download_path

    @staticmethod
    def _own_path(url: str, bases: set[str]) -> re.Match[str] | None:
        scheme, netloc, path = _origin(url)
        for base in bases:
            base_scheme, base_netloc, base_path = _origin(base)
            if (scheme, netloc) == (base_scheme, base_netloc) and path.startswith(base_path):
                return OWN_PATH.fullmatch(unquote(path[len(base_path) :]))
        return None

    async def _own_file(self, account_id: int, match: re.Match[str]) -> StoredFile:
        token = match["token"]
        try:
            if token is not None:
                return await self.files.authorize_download(match["id"], token)
        except errors.NotFound:
            raise Refused("The file does not exist (or was deleted).") from None
        f = await self.files.find(match["id"])
        if f is None or f.account_id != account_id:
            raise Refused("The file does not exist (or was deleted).")
        return f

    # -- fetching other URLs ----------------------------------------------------------------

    async def _fetch(self, account_id: int, url: str) -> StoredFile:
        limit = self.settings.fetch_timeout
        try:
            async with asyncio.timeout(limit):
                return await self._download(account_id, url)
        except TimeoutError:
            raise Refused(f"Fetching the file took longer than {limit:g} s.") from None
        except httpx.HTTPError as exc:
            raise Refused(f"The file could not be fetched: {type(exc).__name__}") from None

    async def _download(self, account_id: int, url: str) -> StoredFile:
        limit = self.settings.fetch_max_bytes
        timeout = httpx.Timeout(self.settings.fetch_timeout)
        async with httpx.AsyncClient(
            transport=self.transport, timeout=timeout, headers={"User-Agent": USER_AGENT}
        ) as client:
            current = url
            for _ in range(self.settings.fetch_max_redirects + 1):
                await self._check_target(current)
                async with client.stream("GET", current) as resp:
                    if resp.is_redirect and resp.next_request is not None:
                        current = str(resp.next_request.url)
                        continue
                    if resp.status_code != 200:
                        raise Refused(f"Fetching the file answered HTTP {resp.status_code}.")
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise _too_large(limit)
                    staged = await self.files.stage(
                        resp.aiter_bytes(), limit=limit, too_large=_too_large
                    )
                    f = await self.files.create(
                        account_id,
                        staged,
                        name=unquote(urlsplit(current).path),
                        content_type=resp.headers.get("content-type"),
                        source="input",
                    )
                    log.info("file_input_fetched", file_id=f.id, size=f.size)
                    return f
        raise Refused("Fetching the file was redirected too many times.")

    async def _check_target(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused("Must be an http(s) URL or a data: URI")
        if self.settings.allow_private_urls:
            return
        host = parts.hostname
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                addresses = await urls.resolve(host, port)
            except OSError:
                raise Refused(f"The host {host} could not be resolved.") from None
        if not all(urls.is_public(address) for address in addresses):
            raise Refused(f"The host {host} is a loopback, private or link-local address.")


def _too_large(limit: int) -> Exception:
    return Refused(f"The file is larger than the limit of {limit} bytes.")
