"""SSRF rules for hosts a caller or an admin chooses (``x-portkey-custom-host``, config ``custom_host``,
a stored provider's ``custom_host``).

Such a host may not resolve to a private, loopback, link-local, multicast, reserved or unspecified
address (IPv4-mapped IPv6 included) unless the operator sets ``MODELPORT_ALLOW_PRIVATE_HOSTS=1``. The
check runs inside the resolver of the session used for such hosts, so the address checked is the
address connected to (no DNS-rebinding window).

Only hosts the operator named use the trusted session: built-in providers' base URLs, hosts of
providers declared in the config file, and ``trusted_hosts`` (names, addresses or CIDRs). A stored
provider's ``custom_host`` set through the control plane is checked like a caller's, because the key
that set it (even an admin key) is not the operator's config: otherwise it could send the stored
secret to a cloud metadata address.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any, Iterable
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


@dataclass(frozen=True, slots=True)
class HostRules:
    """The operator's word on hosts: whether private addresses are allowed, and which hosts are trusted."""

    allow_private: bool = False
    trusted_names: frozenset[str] = frozenset()
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> "HostRules":
        """``trusted_hosts`` plus the hosts of providers declared in the config file (the operator wrote
        them there)."""
        declared = [urlsplit(p.custom_host).hostname for p in settings.providers if p.custom_host]
        return cls.build(settings.allow_private_hosts, [*settings.trusted_hosts, *filter(None, declared)])

    @classmethod
    def build(cls, allow_private: bool, trusted: Iterable[str]) -> "HostRules":
        """Raises ValueError naming the first entry that is neither a host name, an address nor a CIDR."""
        names, networks = set(), []
        for entry in trusted:
            entry = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if not _HOST_NAME.fullmatch(entry):
                    raise ValueError(f"{entry!r} is neither a host name, an IP address nor a CIDR") from None
                names.add(entry.rstrip("."))
        return cls(allow_private, frozenset(names), tuple(networks))

    def trusts(self, url: str) -> bool:
        return _trusts(self, url)

    def check_stored_host(self, url: str) -> str:
        """Validate a stored provider's custom host as set through the control plane."""
        if self.trusts(url):
            return url.rstrip("/")
        try:
            return check_custom_host(url, self.allow_private)
        except ForbiddenHost as refused:
            raise ForbiddenHost(f"{refused.message}; or, if this upstream is yours, add it to trusted_hosts "
                                "(MODELPORT_TRUSTED_HOSTS)") from None


@functools.lru_cache(maxsize=256)  # asked per request for a stored provider's host; a few µs saved each time
def _trusts(rules: HostRules, url: str) -> bool:
    host = (urlsplit(url).hostname or "").rstrip(".")
    if host in rules.trusted_names:
        return True
    if not rules.trusted_networks or not _is_ip_literal(host):
        return False
    address = ipaddress.ip_address(host.split("%", 1)[0])
    return any(address in network for network in rules.trusted_networks)


_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.?")


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
                f"custom host {host!r} resolves to a private or local address; an operator can allow this "
                "with MODELPORT_ALLOW_PRIVATE_HOSTS=1 (or, for a stored provider's host, MODELPORT_TRUSTED_HOSTS)"
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()
