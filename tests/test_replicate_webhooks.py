"""A create with a webhook on a shared Replicate account: Replicate posts to the gateway, which
verifies each event, records it and relays it to the caller's own URL, signed for the caller's key."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.webhook_receiver import WebhookReceiver

SLUG = {"x-portkey-provider": "@replicate-test"}
CREATE = "/models/test/echo/predictions"


@pytest.fixture
def receiver():
    with WebhookReceiver() as hooks:
        yield hooks


@pytest.fixture
def alice(gateway):
    answer = httpx.post(gateway.v1 + "/api-keys", headers=gateway.headers(), json={"name": "alice", "scopes": ["inference"]})
    assert answer.status_code == 200, answer.text
    with httpx.Client(base_url=gateway.v1, headers={"x-portkey-api-key": answer.json()["key"], **SLUG}, timeout=20) as client:
        yield client


def sent_upstream(state) -> dict:
    return state.requests_to("/v1" + CREATE, "POST")[-1].json()


def test_replicate_is_given_the_gateway_url_and_the_caller_sees_its_own(gateway, alice, receiver, fake_replicate):
    _, state = fake_replicate
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook": receiver.hook(),
                                       "webhook_events_filter": ["output"]})
    assert created.status_code == 201, created.text
    upstream = sent_upstream(state)
    assert upstream["webhook"] == gateway.v1 + "/provider-webhooks/replicate/replicate-test"
    assert upstream["webhook_events_filter"] == ["output", "completed"]  # the gateway needs the final state
    assert created.json()["webhook"] == receiver.hook()
    assert created.json()["webhook_events_filter"] == ["output"]


def test_the_legacy_webhook_completed_is_relayed_too(gateway, alice, receiver, fake_replicate):
    _, state = fake_replicate
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook_completed": receiver.hook()})
    assert created.status_code == 201, created.text
    upstream = sent_upstream(state)
    assert "webhook_completed" not in upstream
    assert upstream["webhook"].startswith(gateway.v1 + "/provider-webhooks/replicate/")
    assert upstream["webhook_events_filter"] == ["completed"]
    assert created.json()["webhook_completed"] == receiver.hook() and "webhook" not in created.json()


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data", "http://10.1.2.3/hook",
                                 "http://metadata.google.internal/hook", "file:///etc/passwd"])
def test_a_webhook_url_the_ssrf_rules_refuse_is_400_and_nothing_is_sent(alice, fake_replicate, url):
    _, state = fake_replicate
    before = len(state.requests_to("/v1" + CREATE))
    refused = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook": url})
    assert refused.status_code == 400, refused.text
    assert refused.headers["x-portkey-gateway-exception"] == "true"
    assert refused.json()["error"]["code"] == "forbidden_custom_host"
    assert len(state.requests_to("/v1" + CREATE)) == before


@pytest.mark.parametrize("body, says", [
    ({"webhook": 7}, "URL string"),
    ({"webhook": "http://127.0.0.1:9/h", "webhook_events_filter": ["done"]}, "webhook_events_filter"),
    ({"webhook_events_filter": ["start"]}, "needs a webhook"),
])
def test_a_malformed_webhook_request_is_400_naming_the_field(alice, fake_replicate, body, says):
    refused = alice.post(CREATE, json={"input": {"text": "hi"}, **body})
    assert refused.status_code == 400, refused.text
    assert says in refused.json()["error"]["message"]
