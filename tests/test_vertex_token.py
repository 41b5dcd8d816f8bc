"""Service-account keys become Google access tokens: the JWT bearer grant against a fake token endpoint
that verifies it as Google does, cached per key, refreshed before expiry, fetched once for many waiters."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import pytest

from modelport.errors import BadRequest, Forbidden
from modelport.providers.base import StepAnswer, UpstreamRequest
from modelport.providers.vertex.token import CredentialRefused, ServiceAccount, TokenCache
from tests.fakes.server import FakeServer
from tests.fakes.vertex import VERTEX, VertexState, make_vertex_app, new_service_account



@pytest.fixture(scope="module")
def server():
    with FakeServer(make_vertex_app()) as running:
        yield running


@pytest.fixture(scope="module")
def origin(server) -> str:
    return server.url


@pytest.fixture(scope="module")
def key(server):
    info, public = new_service_account(server.url + "/token")
    server.app[VERTEX].register(info, public)
    return info


@pytest.fixture
def fake(server) -> VertexState:
    state = server.app[VERTEX]
    state.reset()
    return state


async def fetch(request: UpstreamRequest, limit: int) -> StepAnswer:
    async with aiohttp.ClientSession() as session:
        async with session.request(request.method, request.url, headers=request.headers, data=request.body) as answer:
            return StepAnswer(answer.status, {k.lower(): v for k, v in answer.headers.items()}, await answer.read())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_gets_a_token_the_endpoint_issued_once(origin, key, fake):
    tokens = TokenCache()
    first = await tokens.token(json.dumps(key), fetch, origin)
    assert first.startswith("ya29.") and first in fake.tokens
    assert await tokens.token(json.dumps(key), fetch, origin) == first
    assert fake.grants == 1 and tokens.grants == 1


async def test_the_assertion_is_the_documented_jwt(key):
    account = ServiceAccount.parse(key)
    header, claims, _ = (part + "=" * (-len(part) % 4) for part in account.assertion(1_700_000_000).split("."))
    assert json.loads(base64.urlsafe_b64decode(header)) == {"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]}
    assert json.loads(base64.urlsafe_b64decode(claims)) == {
        "iss": key["client_email"], "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": key["token_uri"], "iat": 1_700_000_000, "exp": 1_700_003_600}


async def test_many_requests_on_a_cold_cache_make_one_grant(origin, key, fake):
    fake.grant_delay = 0.2
    tokens = TokenCache()
    got = await asyncio.gather(*(tokens.token(json.dumps(key), fetch, origin) for _ in range(32)))
    assert len(set(got)) == 1 and fake.grants == 1


async def test_a_token_is_replaced_before_it_expires(origin, key, fake):
    clock = Clock()
    tokens = TokenCache(clock=clock)
    first = await tokens.token(key, fetch, origin)  # expires_in 3599: used until 300 s before
    clock.now += 3599 - 301
    assert await tokens.token(key, fetch, origin) == first
    clock.now += 2
    second = await tokens.token(key, fetch, origin)
    assert second != first and fake.grants == 2
    fake.token_lifetime = 10  # short-lived: replaced at half its life
    clock.now += 3599
    third = await tokens.token(key, fetch, origin)
    clock.now += 4.9
    assert await tokens.token(key, fetch, origin) == third
    clock.now += 0.2
    assert await tokens.token(key, fetch, origin) != third and fake.grants == 4


async def test_a_key_google_does_not_know_is_refused_by_email_not_key(origin, server, fake):
    stranger, _ = new_service_account(server.url + "/token", email="stranger@other.iam.gserviceaccount.com")
    with pytest.raises(CredentialRefused) as refused:
        await TokenCache().token(stranger, fetch, origin)
    assert refused.value.status == 401 and "stranger@other.iam.gserviceaccount.com" in refused.value.message
    assert "account not found" in refused.value.message and "PRIVATE KEY" not in refused.value.message


async def test_a_wrong_signature_is_refused(origin, server, key, fake):
    forged, _ = new_service_account(server.url + "/token", email=key["client_email"])
    forged["private_key_id"] = key["private_key_id"]
    with pytest.raises(CredentialRefused, match="Invalid JWT Signature"):
        await TokenCache().token(forged, fetch, origin)
    assert fake.grants == 0


async def test_an_expired_assertion_is_refused(origin, key, fake):
    two_hours_ago = Clock()
    two_hours_ago.now = time.time() - 7200
    with pytest.raises(CredentialRefused, match="short-lived token"):
        await TokenCache(wall=two_hours_ago).token(key, fetch, origin)


async def test_an_assertion_for_another_audience_is_refused(server, key, fake):
    elsewhere = ServiceAccount.parse({**key, "token_uri": "https://oauth2.googleapis.com/token"})
    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/token", data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": elsewhere.assertion(time.time())}) as answer:
            assert answer.status == 400
            assert (await answer.json())["error"] == "invalid_grant"
            assert "audience" in (await answer.json())["error_description"]
    assert fake.grants == 0


@pytest.mark.parametrize("api_url", ["", "https://us-central1-aiplatform.googleapis.com", "http://127.0.0.1:1"])
async def test_a_token_uri_is_googles_or_the_api_hosts_only(key, fake, api_url):
    with pytest.raises(Forbidden) as refused:
        await TokenCache().token(key, fetch, api_url)
    assert "neither Google's token endpoint" in refused.value.message and fake.grants == 0


@pytest.mark.parametrize("broken", ["not json", json.dumps({"client_email": "a@b.c", "private_key": "-----BEGIN nonsense"}),
                                    json.dumps({"private_key": "x"})])
async def test_something_that_is_not_a_key_is_a_clear_400(origin, broken, fake):
    with pytest.raises(BadRequest) as refused:
        await TokenCache().token(broken, fetch, origin)
    assert refused.value.status == 400 and "nonsense" not in refused.value.message and fake.grants == 0
