"""Imported at start-up by a gateway process whose PYTHONPATH starts with this directory
(tests/test_provider_auth_hook.py): adds a provider whose ``ProviderAuth`` signs every request over
its exact bytes, as AWS SigV4 does, after fetching a session token through the gateway's ``Transport``.

It is a real ProviderAuth run by the real gateway (not a stand-in for gateway code): the fake upstream
(tests/fakes/signed.py) checks each signature against the request as it arrived, so a header added, a
body changed or a URL re-encoded after ``authorize`` fails the request.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import orjson
from yarl import URL

from modelport.providers.base import BEARER, ProviderSpec, Setting, Target, Transport, UpstreamRequest
from modelport.providers.registry import PROVIDERS

UNSIGNED = "UNSIGNED-PAYLOAD"


class HmacSigner:
    async def authorize(self, request: UpstreamRequest, target: Target, transport: Transport) -> None:
        await BEARER.authorize(request, target, transport)
        token_url = str(URL(target.base_url).origin() / "token")
        answer = await transport.fetch(UpstreamRequest("POST", token_url, {"content-type": "application/json"}, b"{}"), 4096)
        request.headers["x-test-token"] = orjson.loads(answer.body)["token"]
        request.headers["x-test-payload"] = UNSIGNED if request.stream_body else "sha256"
        payload = UNSIGNED if request.stream_body else hashlib.sha256(request.body or b"").hexdigest()
        names = sorted(request.headers)
        request.headers["x-test-signed-headers"] = ";".join(names)
        lines = [request.method, request.url, *(f"{name}:{request.headers[name]}" for name in names), payload]
        key = (target.settings.get("signing_secret") or target.api_key or "").encode()
        request.headers["x-test-signature"] = hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).hexdigest()


# A secret setting, as AWS's secret access key is one: sealed at rest, opened into Target.settings.
SIGNING_SECRET = Setting("signing_secret", header="signing-secret", config_keys=("signing_secret", "signingSecret"),
                         secret=True, doc="HMAC key the requests are signed with (else the API key)")
PROVIDERS["signed-test"] = ProviderSpec(id="signed-test", base_url="http://localhost:1/v1", auth=HmacSigner(),
                                        unified=frozenset({"chat"}), settings=(SIGNING_SECRET,),
                                        default_headers={"x-test-default": "from-spec"})
# A multi-step provider (several requests per unified call) signed the same way.
PROVIDERS["signed-replicate"] = replace(PROVIDERS["replicate"], id="signed-replicate", auth=HmacSigner())
