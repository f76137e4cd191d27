"""Which URLs the gateway will call out to: http(s) with a host whose every address is public.

Loopback, private, link-local, shared (CGNAT), multicast and reserved destinations are refused
unless ``allow_private`` is set, so a webhook or a file input cannot make the gateway call into
its own network. ``check`` is the webhook policy; file inputs use ``resolve`` and ``is_public``
for each hop of their fetch (``server.files.inputs``).
Host names are resolved and every address must pass; IP literals are checked as written. The
check runs when a prediction is created and again before each attempt (the name may since point
elsewhere); a name that changes between that check and the connection is not caught.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 5.0

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the IP addresses the name resolves to."""


class UrlRefused(Exception):
    """The webhook URL is not one the gateway will call."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Unresolvable(UrlRefused):
    """The host name did not resolve (may be temporary)."""


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, by the system resolver, without blocking the loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver = resolve,
    timeout: float = RESOLVE_TIMEOUT_S,
) -> None:
    """Raise ``UrlRefused`` (with the reason) unless the gateway may POST to ``url``."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("must be an http or https URL")
    host = parts.hostname
    if not host:
        raise UrlRefused("must have a host")
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await asyncio.wait_for(
                resolver(host, port or (443 if scheme == "https" else 80)), timeout
            )
        except (OSError, UnicodeError, TimeoutError) as exc:
            raise Unresolvable(f"host {host} does not resolve ({exc or 'timeout'})") from None
        if not addresses:
            raise Unresolvable(f"host {host} does not resolve")
    refused = [a for a in addresses if not is_public(a)]
    if refused:
        raise UrlRefused(
            f"resolves to a loopback, private, link-local or reserved address ({refused[0]});"
            " such destinations are not allowed"
        )
