"""The webhook URL policy: http(s), a host, and only public destinations unless allowed."""

import pytest

from server import urls

pytestmark = pytest.mark.anyio

PUBLIC = "93.184.216.34"


def resolver_for(table: dict[str, list[str]]) -> urls.Resolver:
    """A resolver that answers from ``table`` and fails like getaddrinfo for other names."""
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


NAMES = {
    "hooks.example.com": [PUBLIC],
    "inside.example.com": ["10.1.2.3"],
    "mixed.example.com": [PUBLIC, "127.0.0.1"],
    "v6.example.com": ["2606:4700::1111"],
    "mapped.example.com": ["::ffff:192.168.0.1"],
}


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/replicate",
        "http://hooks.example.com:8080/x?y=1",
        f"http://{PUBLIC}/hook",
        "https://v6.example.com/",
        "https://[2606:4700::1111]/hook",
    ],
)
async def test_public_destinations_pass(url: str) -> None:
    """http(s) URLs whose host is public (by name or literal) are accepted."""
    await urls.check(url, allow_private=False, resolver=resolver_for(NAMES))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example.com/x", "must be an http or https URL"),
        ("hooks.example.com/x", "must be an http or https URL"),
        ("https:///path-only", "must have a host"),
        ("http://127.0.0.1:9000/hook", "loopback, private"),  # loopback literal
        ("http://[::1]/hook", "loopback, private"),  # IPv6 loopback
        ("http://10.0.0.8/hook", "loopback, private"),  # RFC 1918
        ("http://172.20.1.1/hook", "loopback, private"),
        ("http://192.168.1.1/hook", "loopback, private"),
        ("http://169.254.169.254/latest/meta-data", "loopback, private"),  # link-local
        ("http://100.64.0.1/hook", "loopback, private"),  # shared address space (CGNAT)
        ("http://0.0.0.0/hook", "loopback, private"),  # unspecified
        ("http://224.0.0.1/hook", "loopback, private"),  # multicast
        ("http://240.0.0.1/hook", "loopback, private"),  # reserved
        ("http://[fe80::1]/hook", "loopback, private"),  # IPv6 link-local
        ("http://[fd00::1]/hook", "loopback, private"),  # IPv6 unique local
        ("http://[::ffff:127.0.0.1]/hook", "loopback, private"),  # IPv4-mapped loopback
        ("https://inside.example.com/x", "loopback, private"),  # name -> private address
        ("https://mixed.example.com/x", "loopback, private"),  # one bad address is enough
        ("https://mapped.example.com/x", "loopback, private"),
        ("https://nowhere.example.com/x", "does not resolve"),
        ("http://hooks.example.com:99999/x", "is not a valid URL"),
        ("https://hooks.example.com/" + "a" * 2100, "at most 2048 characters"),
    ],
)
async def test_refused_destinations(url: str, reason: str) -> None:
    """Other schemes, hostless URLs and non-public destinations are refused with a reason."""
    with pytest.raises(urls.UrlRefused) as refused:
        await urls.check(url, allow_private=False, resolver=resolver_for(NAMES))
    assert reason in refused.value.reason


async def test_unresolvable_is_its_own_kind() -> None:
    """A name that does not resolve may be temporary: the deliverer retries it, others not."""
    with pytest.raises(urls.Unresolvable):
        await urls.check(
            "https://nowhere.example.com/", allow_private=False, resolver=resolver_for({})
        )


async def test_resolver_gets_the_default_port_of_the_scheme() -> None:
    """Names are resolved for the port the request will use."""
    resolve = resolver_for(NAMES)
    await urls.check("https://hooks.example.com/a", allow_private=False, resolver=resolve)
    await urls.check("http://hooks.example.com/a", allow_private=False, resolver=resolve)
    await urls.check("http://hooks.example.com:81/a", allow_private=False, resolver=resolve)
    assert resolve.asked == [  # type: ignore[attr-defined]
        ("hooks.example.com", 443),
        ("hooks.example.com", 80),
        ("hooks.example.com", 81),
    ]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/hook", "http://localhost/hook", "https://inside.example.com/"]
)
async def test_allow_private_lets_them_through_without_resolving(url: str) -> None:
    """With allow_private (tests, labs) any http(s) host is fine and nothing is resolved."""
    resolve = resolver_for({})
    await urls.check(url, allow_private=True, resolver=resolve)
    assert resolve.asked == []  # type: ignore[attr-defined]


async def test_allow_private_still_requires_http_and_a_host() -> None:
    """The shape rules hold even when private destinations are allowed."""
    with pytest.raises(urls.UrlRefused, match="http or https"):
        await urls.check("file:///etc/passwd", allow_private=True)


async def test_system_resolver_refuses_localhost() -> None:
    """The real resolver (no network needed: /etc/hosts) maps localhost to loopback."""
    with pytest.raises(urls.UrlRefused) as refused:
        await urls.check("http://localhost:8123/hook", allow_private=False)
    assert not isinstance(refused.value, urls.Unresolvable)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        (PUBLIC, True),
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.2", False),
        ("::ffff:8.8.8.8", True),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    """Addresses are judged by the ipaddress module's idea of global unicast."""
    assert urls.is_public(address) is public
