"""Refuse to connect to private, loopback, link-local, multicast and reserved addresses.

A crawler follows links and redirects written by strangers; without this check a public page
could point it at 127.0.0.1, the cloud metadata service (169.254.169.254) or an intranet
host (server-side request forgery). The check runs inside aiohttp's resolver, so the
addresses checked are exactly the ones connected to (no DNS-rebinding gap).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = ["GuardedResolver", "PrivateAddressError", "check_host", "check_literal",
           "refusal_reason"]

HINT = ("set allow_private_addresses=true to crawl it (CrawlConfig(allow_private_addresses=True)"
        " or --set allow_private_addresses=true)")


class PrivateAddressError(ValueError):
    """A host resolves to an address the crawler must not reach unless explicitly allowed."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host, self.address, self.reason = host, address, reason
        shown = host if host == address else f"{host} ({address})"
        super().__init__(f"refusing to crawl {shown}: {reason} address; {HINT}")


def refusal_reason(address: str) -> str | None:
    """Why an IP address is off limits ("loopback", "private", ...) or None if it is public."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return "unparseable"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
              ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
              ("reserved", ip.is_reserved), ("private", ip.is_private),
              ("non-global", not ip.is_global))
    return next((name for name, hit in checks if hit), None)


def _check(host: str, addresses: list[str]) -> None:
    for address in addresses:
        reason = refusal_reason(address)
        if reason is not None:
            raise PrivateAddressError(host, address, reason)


def check_literal(host: str) -> None:
    """Raise for an IP-literal host that is not public; names are checked when resolved."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    _check(host, [host.strip("[]")])


async def check_host(host: str, port: int) -> list[str]:
    """Resolve ``host`` and raise PrivateAddressError unless every address is public."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    addresses = sorted({str(info[4][0]) for info in infos})
    _check(host, addresses)
    return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that fails the connection when any resolved address is not public.

    Every address is checked, not just the first, so a name that mixes a public and a
    private address cannot be used to reach the private one on a retry."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        _check(host, [str(r["host"]) for r in results])
        return results

    async def close(self) -> None:
        await self._inner.close()
