"""A signed stream link verifies only exactly as the gateway signed it: no junk appended or inserted."""

from __future__ import annotations

import httpx
import pytest

SLUG = {"x-portkey-provider": "@replicate-test"}


@pytest.fixture(scope="module")
def stream_url(gateway) -> str:
    created = httpx.post(gateway.v1 + "/models/test/llm/predictions", headers=gateway.headers(**SLUG), timeout=20,
                         json={"input": {"prompt": "one two"}, "stream": True})
    assert created.status_code == 201, created.text
    return created.json()["urls"]["stream"]


def status_of(url: str) -> int:
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=20) as response:
        return response.status_code


def test_the_link_as_signed_verifies(stream_url):
    assert status_of(stream_url) == 200


@pytest.mark.parametrize("junk", ["!!", "=", "==", "~", "$", "%21", ".", ".x", "/more", "%2F", "%20"])
def test_junk_appended_to_a_link_is_refused(stream_url, junk):
    assert status_of(stream_url + junk) == 404


@pytest.mark.parametrize("junk", ["!", "=", "$"])
def test_junk_inside_the_signed_payload_is_refused(stream_url, junk):
    prefix, token = stream_url.rsplit("/", 1)
    assert status_of(f"{prefix}/{token[:5]}{junk}{token[5:]}") == 404
