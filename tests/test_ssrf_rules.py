"""Our own SSRF checks refuse every spelling of a non-public address: shared address space, IPv6 forms that
wrap a private IPv4 address, and legacy numeric IPv4 spellings, for caller-chosen and admin-stored hosts."""

from __future__ import annotations

import httpx
import pytest

NOT_PUBLIC = [
    "http://100.64.0.1/v1", "http://100.100.100.200/latest",  # shared address space (Alibaba's metadata)
    "http://[2002:a9fe:a9fe::]/v1", "http://[2002:7f00:1::]/v1",  # 6to4 of 169.254.169.254, 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/v1", "http://[64:ff9b::10.0.0.1]/v1", "http://[64:ff9b:1::1]/v1",  # NAT64
    "http://[::ffff:169.254.169.254]/v1", "http://[::ffff:7f00:1]/v1", "http://[::127.0.0.1]/v1",  # mapped, compatible
]
ODD_SPELLINGS = ["http://2130706433/v1", "http://127.1/v1", "http://0x7f.1/v1", "http://0177.0.0.1/v1",
                 "http://0x7f000001/v1", "http://10.1/v1"]


def caller_host(gateway, host: str) -> httpx.Response:
    headers = gateway.headers(**{"x-portkey-provider": "replicate", "x-portkey-custom-host": host,
                                 "Authorization": "Bearer r8_mine"})
    return httpx.get(gateway.v1 + "/account", headers=headers, timeout=20)


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    error = response.json()["error"]
    assert error["code"] == "forbidden_custom_host"
    return error["message"]


@pytest.mark.parametrize("host", NOT_PUBLIC)
def test_addresses_that_are_not_public_are_refused_in_every_form(gateway, host):
    assert "private or local address" in refusal(caller_host(gateway, host))


@pytest.mark.parametrize("host", ODD_SPELLINGS)
def test_legacy_ipv4_spellings_are_refused_by_our_own_check(gateway, host):
    assert "standard form" in refusal(caller_host(gateway, host))


@pytest.mark.parametrize("host", ["http://metadata.google.internal./computeMetadata/v1", "http://169.254.169.254./latest"])
def test_a_trailing_dot_changes_nothing(gateway, host):
    assert "internal name" in refusal(caller_host(gateway, host))


@pytest.mark.parametrize("host", ["http://100.100.100.200/v1", "http://[64:ff9b::a9fe:a9fe]/v1", "http://2130706433/v1"])
def test_an_admin_stored_host_gets_the_same_rules(gateway, host):
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=20) as admin:
        created = admin.post("/virtual-keys", json={"name": "x", "provider": "openai", "key": "k", "custom_host": host})
        refusal(created)
