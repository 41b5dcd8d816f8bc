"""A provider's auth is a hook over the whole upstream request (providers/base.py ``ProviderAuth``).

The gateway here runs with tests/signed_provider on its path, which adds provider "signed-test": its
auth fetches a session token through the gateway's ``Transport`` and signs method, URL, every header and
the body's SHA-256, as AWS SigV4 does. The fake upstream (tests/fakes/signed.py) checks each signature
against the bytes it received, so the request passes only if the hook ran last and saw what was sent.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fakes.server import FakeServer
from tests.fakes.replicate import make_replicate_app
from tests.fakes.signed import SIGNED, SignedState, make_signed_app, signature_check
from modelport.store import DB_FILE_NAME, LogFilter
from tests.harness import GatewayProcess, free_port
from tests.test_logging import wait_for_logs

KEY = "sk-signed-test-0123456789"
PLUGIN = Path(__file__).parent / "signed_provider"


@pytest.fixture(scope="module")
def signed():
    app = make_signed_app(api_key=KEY)
    with FakeServer(app) as server:
        yield server, app[SIGNED]


@pytest.fixture(scope="module")
def signed_replicate():
    state = SignedState()
    app = make_replicate_app(token=KEY)
    app.middlewares.insert(0, signature_check(KEY, state))  # before its own key check
    with FakeServer(app) as server:
        yield server, state


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    path = os.pathsep.join(filter(None, (str(PLUGIN), os.environ.get("PYTHONPATH"))))
    process = GatewayProcess(tmp_path_factory.mktemp("signed") / "data", env={"PYTHONPATH": path},
                             settings={"require_api_key": False, "allow_private_hosts": True})
    with process:
        yield process


def headers(host: str, **extra: str) -> dict[str, str]:
    return {"x-portkey-provider": "signed-test", "x-portkey-custom-host": host, "authorization": f"Bearer {KEY}", **extra}


def test_unified_chat_is_signed_over_the_bytes_sent(gateway, signed):
    server, state = signed
    before = len(state.verified)
    body = {"model": "signed-model", "messages": [{"role": "user", "content": "héllo"}]}
    response = httpx.post(gateway.v1 + "/chat/completions", json=body, timeout=10,
                          headers=headers(server.url + "/v1", **{"x-caller": "kept"}))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "signed ok"
    assert state.verified[before:] == [{"path": "/v1/chat/completions", "payload": "signed",
                                        "bytes": len(response.request.content)}]


def test_proxied_request_is_signed_with_its_url_as_sent(gateway, signed):
    server, state = signed
    before = len(state.verified)
    payload = b'{"name": "a/b"}'
    response = httpx.post(gateway.v1 + "/things/caf%C3%A9?q=x%20y&z=1", content=payload, timeout=10,
                          headers=headers(server.url + "/v1", **{"content-type": "application/json"}))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    assert state.verified[before:] == [{"path": "/v1/things/café", "payload": "signed", "bytes": len(payload)}]


def test_streamed_upload_is_signed_without_its_body(gateway, signed):
    """Past the gateway's 4 MiB buffer the body streams through unread: the hook sees stream_body."""
    server, state = signed
    before = len(state.verified)
    size = 5 * 1024 * 1024

    def chunks():
        for _ in range(size // 65536):
            yield b"x" * 65536

    response = httpx.post(gateway.v1 + "/uploads", content=chunks(), timeout=30,
                          headers=headers(server.url + "/v1", **{"content-length": str(size)}))
    assert response.status_code == 200, response.text
    assert response.json()["received"] == size
    assert state.verified[before:] == [{"path": "/v1/uploads", "payload": "unsigned", "bytes": size}]


def test_a_failed_background_call_is_the_gateways_error(gateway, signed):
    """The token endpoint is down: the hook's transport fails as the gateway's 502, nothing is sent."""
    server, state = signed
    refused, verified = len(state.refused), len(state.verified)
    down = f"http://127.0.0.1:{free_port()}/v1"
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "m", "messages": []}, timeout=10,
                          headers=headers(down))
    assert response.status_code == 502, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    assert "signed-test's auth" in response.json()["error"]["message"]
    assert (len(state.refused), len(state.verified)) == (refused, verified)


def test_each_step_of_a_multi_step_call_is_signed(gateway, signed_replicate):
    """Replicate's chat is a schema read, a create and polls: each request to its API is signed."""
    server, state = signed_replicate
    body = {"model": "test/llm", "messages": [{"role": "user", "content": "hello there world"}]}
    response = httpx.post(gateway.v1 + "/chat/completions", json=body, timeout=30,
                          headers={**headers(server.url + "/v1"), "x-portkey-provider": "signed-replicate"})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "hello there world"
    assert state.refused == []
    steps = [(seen["path"], seen["payload"]) for seen in state.verified]
    assert steps[:2] == [("/v1/models/test/llm", "signed"), ("/v1/models/test/llm/predictions", "signed")]


@pytest.fixture(scope="module")
def autopolling_gateway(tmp_path_factory):
    """As ``gateway``, with the log service polling predictions nobody polls."""
    path = os.pathsep.join(filter(None, (str(PLUGIN), os.environ.get("PYTHONPATH"))))
    process = GatewayProcess(tmp_path_factory.mktemp("signed-autopoll") / "data", env={"PYTHONPATH": path},
                             settings={"require_api_key": False, "allow_private_hosts": True,
                                       "replicate_autopoll": True, "replicate_autopoll_interval": 0.3})
    with process:
        yield process


def test_the_log_services_polls_are_signed_like_the_pipelines_requests(autopolling_gateway, signed_replicate):
    """Autopoll reaches a stored provider's API through its auth hook, as the request path does: a
    provider that signs each request (or refreshes a token) gets its fire-and-forget jobs polled too."""
    gateway, (server, state) = autopolling_gateway, signed_replicate
    slug = "signed-replicate-" + uuid.uuid4().hex[:8]
    created = httpx.post(gateway.v1 + "/integrations", headers=gateway.headers(), timeout=10, json={
        "name": slug, "slug": slug, "ai_provider_id": "signed-replicate", "key": KEY,
        "configurations": {"custom_host": server.url + "/v1"}})
    assert created.status_code == 200, created.text
    refused = len(state.refused)
    prediction = httpx.post(gateway.v1 + "/models/test/echo/predictions", json={"input": {"text": "nobody polls me"}},
                            headers={"x-portkey-provider": f"@{slug}"}, timeout=10)
    assert prediction.status_code == 201, prediction.text
    prediction_id = prediction.json()["id"]
    deadline = time.monotonic() + 15
    while not [seen for seen in state.verified if seen["path"] == f"/v1/predictions/{prediction_id}"]:
        assert time.monotonic() < deadline, f"no signed poll of {prediction_id}; refused: {state.refused[refused:]}"
        time.sleep(0.05)
    polls = [row for row in wait_for_logs(gateway, LogFilter(prediction_id=prediction_id), 2)
             if row["metadata"] == {"modelport_autopoll": "true"}]
    assert polls and all(row["status"] == 200 for row in polls), polls
    assert state.refused[refused:] == []


# -- secret settings -------------------------------------------------------------------------------
SIGNING_SECRET = "hmac-signing-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def signed_by_setting():
    """An upstream that checks signatures made with SIGNING_SECRET, a secret setting, not the API key."""
    app = make_signed_app(api_key=SIGNING_SECRET)
    with FakeServer(app) as server:
        yield server, app[SIGNED]


def test_a_secret_setting_is_sealed_at_rest_hidden_and_opened_for_the_request(gateway, signed_by_setting):
    server, state = signed_by_setting
    slug = "signed-" + uuid.uuid4().hex[:8]
    created = httpx.post(gateway.v1 + "/integrations", headers=gateway.headers(), timeout=10, json={
        "name": slug, "slug": slug, "ai_provider_id": "signed-test", "key": KEY,
        "configurations": {"signing_secret": SIGNING_SECRET, "custom_host": server.url + "/v1"}})
    assert created.status_code == 200, created.text
    shown = [httpx.get(gateway.v1 + f"/integrations/{slug}", headers=gateway.headers(), timeout=10),
             httpx.get(gateway.v1 + "/integrations", headers=gateway.headers(), params={"page_size": 1000}, timeout=10)]
    assert all(reply.status_code == 200 and SIGNING_SECRET not in reply.text for reply in shown)
    configurations = shown[0].json()["configurations"]
    assert configurations["signing_secret"] != SIGNING_SECRET and "…" in configurations["signing_secret"]
    with sqlite3.connect(gateway.data_dir / DB_FILE_NAME) as db:  # the row as it is on disk
        (raw,) = db.execute("SELECT settings FROM providers WHERE slug = ?", (slug,)).fetchone()
    assert SIGNING_SECRET not in raw and '"$sealed"' in raw

    before = len(state.verified)
    trace_id = "t-" + uuid.uuid4().hex
    reply = httpx.post(gateway.v1 + "/chat/completions", timeout=10, json={"model": "m", "messages": []},
                       headers={"x-portkey-provider": f"@{slug}", "x-portkey-trace-id": trace_id})
    assert reply.status_code == 200, reply.text  # signed with the opened secret, or the fake refuses it
    assert len(state.verified) == before + 1
    assert SIGNING_SECRET not in str(wait_for_logs(gateway, LogFilter(trace_id=trace_id), 1))


def test_a_secret_setting_sent_as_a_header_signs_and_is_redacted_in_the_log(gateway, signed_by_setting):
    server, state = signed_by_setting
    trace_id = "t-" + uuid.uuid4().hex
    reply = httpx.post(gateway.v1 + "/chat/completions", timeout=10, json={"model": "m", "messages": []},
                       headers={**headers(server.url + "/v1"), "x-portkey-signing-secret": SIGNING_SECRET,
                                "x-portkey-trace-id": trace_id})
    assert reply.status_code == 200, reply.text
    (row,) = wait_for_logs(gateway, LogFilter(trace_id=trace_id), 1)
    assert SIGNING_SECRET not in str(row)
    assert "x-portkey-signing-secret" in str(row)  # the header is in the record, its value is not
