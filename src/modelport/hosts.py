"""SSRF rules for hosts a caller or an admin chooses (``x-portkey-custom-host``, config ``custom_host``,
a stored provider's ``custom_host``).

Such a host may not resolve to an address that is not globally routable unicast (private, loopback,
link-local, shared 100.64.0.0/10, multicast, reserved, unspecified; IPv6 forms wrapping such an IPv4
address: mapped, compatible, 6to4, NAT64) unless the operator sets ``MODELPORT_ALLOW_PRIVATE_HOSTS=1``;
nor be spelled as a legacy numeric IPv4 (``2130706433``, ``127.1``, ``0x7f.1``). The
check runs inside the resolver of the session used for such hosts, so the address checked is the
address connected to (no DNS-rebinding window).

Only hosts the operator named use the trusted session: built-in providers' base URLs, hosts of
providers declared in the config file, and ``trusted_hosts`` (names, addresses or CIDRs). A stored
provider's ``custom_host`` set through the control plane is checked like a caller's, because the key
that set it (even an admin key) is not the operator's config: otherwise it could send the stored
secret to a cloud metadata address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urlsplit

from .errors import ForbiddenHost, quoted

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "169.254.169.254"})
# A last label that is a number: never a top-level domain (RFC 3696 §2), always a legacy IPv4 spelling.
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
# IPv6 forms that carry an IPv4 address a gateway or the kernel connects to (RFC 6052, 3056, 4291 §2.5.5).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: translated to whatever the site chooses


# A base URL is compiled into the pattern that rewrites the upstream's URLs in its responses, and the
# re module caches 512 compiled patterns: 200 distinct 32 KB hosts held 108 MB. Browsers and sitemaps
# keep URLs under about 2,000 characters.
MAX_CUSTOM_HOST = 2048


def check_custom_host(url: str, allow_private: bool = False) -> str:
    """Validate a caller-chosen base URL; returns it without a trailing slash.

    IP literals are checked here because aiohttp never calls the resolver for them; names are checked
    by ``PublicOnlyResolver`` (transport/sessions.py) at connect time."""
    if len(url) > MAX_CUSTOM_HOST:
        raise ForbiddenHost(f"custom host is {len(url):,} characters long; at most {MAX_CUSTOM_HOST:,} are accepted")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenHost(f"custom host {quoted(url)} must be an absolute http(s) URL such as https://api.example.com/v1")
    if parts.username or parts.password:
        raise ForbiddenHost("custom host must not carry credentials in the URL")
    host = parts.hostname.lower().rstrip(".")  # "metadata.google.internal." is the same name
    if not _is_ip_literal(host) and _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        # 2130706433, 127.1, 0x7f.1, 0177.0.0.1: resolvers read these as IPv4 addresses; we would not.
        raise ForbiddenHost(f"custom host {parts.hostname!r} is neither a host name nor an IP address in standard "
                            "form; write an IPv4 address as four decimal numbers, e.g. 203.0.113.7")
    if host in _METADATA_HOSTS or host.endswith((".internal", ".local", ".localhost")):
        raise ForbiddenHost(f"custom host {parts.hostname!r} is not allowed (internal name)")
    if not allow_private and _is_ip_literal(host) and not is_public_address(host):
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
        host = (urlsplit(url).hostname or "").rstrip(".")
        if host in self.trusted_names:
            return True
        if not self.trusted_networks or not _is_ip_literal(host):
            return False
        address = ipaddress.ip_address(host.split("%", 1)[0])
        return any(address in network for network in self.trusted_networks)

    def check_stored_host(self, url: str) -> str:
        """Validate a stored provider's custom host as set through the control plane."""
        if self.trusts(url):
            return url.rstrip("/")
        try:
            return check_custom_host(url, self.allow_private)
        except ForbiddenHost as refused:
            raise ForbiddenHost(f"{refused.message}; or, if this upstream is yours, add it to trusted_hosts "
                                "(MODELPORT_TRUSTED_HOSTS)") from None


_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.?")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def is_public_address(address: str) -> bool:
    """Globally routable and unicast. ``is_global`` also excludes the shared space 100.64.0.0/10, which
    holds a cloud metadata address (Alibaba's 100.100.100.200); IPv6 forms wrapping an IPv4 address are
    judged by that address."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        ip = _wrapped_ipv4(ip) or ip
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def _wrapped_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return None
