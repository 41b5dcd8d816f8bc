"""SSRF rules for hosts a *caller* chooses (``x-portkey-custom-host``, config ``custom_host``).

A caller-chosen host may not resolve to a private, loopback, link-local, multicast, reserved or
unspecified address (IPv4-mapped IPv6 included) unless the operator sets
``MODELPORT_ALLOW_PRIVATE_HOSTS=1``. The check runs inside the resolver of the session used for such
hosts, so the address checked is the address connected to (no DNS-rebinding window). Hosts configured
by the operator (built-in providers, stored providers' ``custom_host``) use the trusted session.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from .errors import ForbiddenHost

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "169.254.169.254"})


def check_custom_host(url: str, allow_private: bool = False) -> str:
    """Validate a caller-chosen base URL; returns it without a trailing slash.

    IP literals are checked here because aiohttp never calls the resolver for them; names are checked
    by ``PublicOnlyResolver`` at connect time."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenHost(f"custom host {url!r} must be an absolute http(s) URL such as https://api.example.com/v1")
    if parts.username or parts.password:
        raise ForbiddenHost("custom host must not carry credentials in the URL")
    if parts.hostname.lower() in _METADATA_HOSTS or parts.hostname.lower().endswith((".internal", ".local", ".localhost")):
        raise ForbiddenHost(f"custom host {parts.hostname!r} is not allowed (internal name)")
    if not allow_private and _is_ip_literal(parts.hostname) and not is_public_address(parts.hostname):
        raise ForbiddenHost(
            f"custom host {parts.hostname!r} is a private or local address; "
            "an operator can allow this with MODELPORT_ALLOW_PRIVATE_HOSTS=1"
        )
    return url.rstrip("/")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the default resolver, then refuses any non-public address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if is_public_address(a["host"])]
        if not allowed:
            raise ForbiddenHost(
                f"custom host {host!r} resolves to a private or local address; "
                "an operator can allow this with MODELPORT_ALLOW_PRIVATE_HOSTS=1"
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()
