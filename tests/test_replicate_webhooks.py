"""A create with a webhook on a shared Replicate account: Replicate posts to the gateway, which
verifies each event, records it and relays it to the caller's own URL, signed for the caller's key."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest
import replicate
from replicate.webhook import InvalidSignatureError

from tests.fakes.replicate_catalog import WEBHOOK_SECRET

from tests.fakes.replicate_webhooks import signed_headers
from tests.fakes.webhook_receiver import WebhookReceiver

SLUG = {"x-portkey-provider": "@replicate-test"}
CREATE = "/models/test/echo/predictions"


@pytest.fixture
def receiver():
    with WebhookReceiver() as hooks:
        yield hooks


def tenant(gateway, name: str) -> httpx.Client:
    answer = httpx.post(gateway.v1 + "/api-keys", headers=gateway.headers(), json={"name": name, "scopes": ["inference"]})
    assert answer.status_code == 200, answer.text
    return httpx.Client(base_url=gateway.v1, headers={"x-portkey-api-key": answer.json()["key"], **SLUG}, timeout=20)


@pytest.fixture
def alice(gateway):
    with tenant(gateway, "alice") as client:
        yield client


@pytest.fixture
def bob(gateway):
    with tenant(gateway, "bob") as client:
        yield client


def official_client(gateway, http: httpx.Client) -> replicate.Client:
    # A copy: replicate-python 1.0.7 writes its Authorization into the headers dict it is given.
    return replicate.Client(api_token=http.headers["x-portkey-api-key"], base_url=gateway.url, headers=dict(SLUG))


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


def finished(received) -> bool:
    return any(r.json()["status"] == "succeeded" for r in received)


def delivered_to_gateway(state, prediction_id: str, event: str, timeout: float = 10) -> list:
    """The fake's deliveries of ``prediction_id`` to the gateway, once one of ``event`` was answered 2xx."""
    deadline = time.monotonic() + timeout
    while True:
        mine = [d for d in state.webhook_deliveries if d.json()["id"] == prediction_id]
        if any(d.event == event and d.status and 200 <= d.status < 300 for d in mine):
            return mine
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries of {prediction_id}: {[(d.event, d.status) for d in mine]}")
        time.sleep(0.02)


def test_events_reach_the_caller_with_api_urls_on_the_gateway(gateway, alice, receiver, fake_replicate):
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook": receiver.hook()}).json()
    got = receiver.wait_for(finished)
    assert {r.json()["id"] for r in got} == {created["id"]}
    assert got[0].json()["status"] in ("starting", "processing")  # every event, as Replicate's default sends
    last = got[-1].json()
    assert last["urls"]["get"] == f"{gateway.v1}/predictions/{created['id']}"
    assert last["webhook"] == receiver.hook()
    assert len({r.headers["webhook-id"] for r in got}) == len(got)


def test_a_completed_event_the_caller_did_not_ask_for_is_not_relayed(alice, receiver, fake_replicate):
    _, state = fake_replicate
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook": receiver.hook(),
                                       "webhook_events_filter": ["start"]}).json()
    delivered_to_gateway(state, created["id"], "completed")
    time.sleep(0.3)
    assert len(receiver.received) == 1 and receiver.received[0].json()["status"] in ("starting", "processing")


def test_the_final_event_prices_a_prediction_nobody_polls(gateway, alice, receiver, fake_replicate):
    _, state = fake_replicate
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook_completed": receiver.hook()}).json()
    receiver.wait_for(finished)
    assert len(state.requests_to(f"/v1/predictions/{created['id']}", "GET")) == 0  # nobody polled
    deadline = time.monotonic() + 10
    while (row := terminal_log(gateway, created["id"])) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert row is not None, "the prediction's end was never recorded"
    logged = httpx.get(f"{gateway.v1}/logs/{row[0]}", headers=gateway.headers()).json()
    assert logged["metadata"]["modelport_webhook"] == "received"
    assert row[1] == "succeeded" and row[2] is not None  # its cost was computed (test/echo has a price)
    deadline = time.monotonic() + 10  # the prediction view names the relay's steps
    while "webhook delivery" not in (steps := [step["step"] for step in httpx.get(
            f"{gateway.v1}/logs/predictions/{created['id']}", headers=gateway.headers()).json()["lifecycle"]]):  # fmt: skip
        assert time.monotonic() < deadline, steps
        time.sleep(0.1)
    assert steps[0] == "create" and "webhook received" in steps


def terminal_log(gateway, prediction_id: str):
    with sqlite3.connect(gateway.data_dir / "modelport.db") as conn:
        return conn.execute("SELECT terminal_log_id, status, cost_status FROM predictions WHERE id = ? AND terminal_log_id IS NOT NULL",
                            (prediction_id,)).fetchone()


def post_event(gateway, headers: dict, body: bytes) -> httpx.Response:
    return httpx.post(gateway.v1 + "/provider-webhooks/replicate/replicate-test", headers=headers, content=body)


def test_replayed_stale_and_forged_events_are_refused_and_not_relayed(gateway, alice, receiver, fake_replicate):
    _, state = fake_replicate
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook_completed": receiver.hook()}).json()
    receiver.wait_for(finished)
    final = delivered_to_gateway(state, created["id"], "completed")[-1]
    relayed = len(receiver.received)
    replayed = post_event(gateway, final.headers, final.body)
    assert replayed.status_code == 409 and replayed.json()["error"]["code"] == "webhook_replayed"
    stale = post_event(gateway, signed_headers(final.body, timestamp=int(time.time()) - 301), final.body)
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "stale_webhook"
    forged = post_event(gateway, signed_headers(final.body, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"), final.body)
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_webhook_signature"
    unsigned = post_event(gateway, {"content-type": "application/json"}, final.body)
    assert unsigned.status_code == 400
    time.sleep(0.3)
    assert len(receiver.received) == relayed


def test_an_event_for_another_route_is_404(gateway):
    assert httpx.post(gateway.v1 + "/provider-webhooks/replicate/no-such-slug", content=b"{}").status_code == 404
    assert httpx.post(gateway.v1 + "/provider-webhooks/openai/openai-test", content=b"{}").status_code == 404


def test_relays_validate_with_the_secret_the_callers_key_reads(gateway, alice, bob, receiver):
    alice.post(CREATE, json={"input": {"text": "hi"}, "webhook": receiver.hook()})
    got = receiver.wait_for(finished)
    secret = official_client(gateway, alice).webhooks.default.secret()
    assert secret.key.startswith("whsec_") and secret.key != WEBHOOK_SECRET
    for event in got:  # replicate-python's own check, unchanged
        replicate.Client().webhooks.validate(headers=event.headers, body=event.body.decode(), secret=secret)
    others = official_client(gateway, bob).webhooks.default.secret()
    assert others.key != secret.key
    with pytest.raises(InvalidSignatureError):  # bob's secret cannot vouch for alice's events
        replicate.Client().webhooks.validate(headers=got[0].headers, body=got[0].body.decode(), secret=others)
    admin = httpx.get(gateway.v1 + "/webhooks/default/secret", headers=gateway.headers(**SLUG))
    assert admin.json()["key"] == WEBHOOK_SECRET  # an admin key still reads the account's


def delivery_logs(gateway, prediction_id: str, count: int, timeout: float = 10) -> list[dict]:
    """The logs API's records of relay attempts for ``prediction_id``, once there are ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(gateway.v1 + "/logs", headers=gateway.headers(),
                          params={"prediction_id": prediction_id, "metadata.modelport_webhook": "delivery", "limit": 100})
        assert reply.status_code == 200, reply.text
        found = reply.json()["data"]
        if len(found) >= count or time.monotonic() > deadline:
            return sorted(found, key=lambda r: r["metadata"]["attempt"])
        time.sleep(0.05)


def test_a_failing_receiver_is_retried_with_the_same_id_and_each_attempt_is_logged(gateway, alice, receiver):
    receiver.answer_next(503, times=2)  # then 200
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook_completed": receiver.hook()}).json()
    got = receiver.wait_for(lambda got: len(got) == 3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    secret = official_client(gateway, alice).webhooks.default.secret()
    replicate.Client().webhooks.validate(headers=got[-1].headers, body=got[-1].body.decode(), secret=secret)
    attempts = delivery_logs(gateway, created["id"], 3)
    assert [(r["metadata"]["attempt"], r["status"]) for r in attempts] == [("1", 503), ("2", 503), ("3", 200)]
    assert {r["path"] for r in attempts} == {receiver.hook()}


def test_a_relay_gives_up_after_five_attempts(gateway, alice, receiver):
    receiver.answer_next(500, times=10)
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook_completed": receiver.hook()}).json()
    receiver.wait_for(lambda got: len(got) == 5)
    time.sleep(1.0)  # the backoff would have reached a sixth attempt by now (50+100+200+400 ms)
    assert len(receiver.received) == 5
    assert [r["status"] for r in delivery_logs(gateway, created["id"], 5)] == [500] * 5


def test_a_4xx_from_the_receiver_is_final(gateway, alice, receiver):
    receiver.answer_next(410, times=3)
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook_completed": receiver.hook()}).json()
    receiver.wait_for(lambda got: len(got) == 1)
    time.sleep(0.5)
    assert len(receiver.received) == 1
    assert [r["status"] for r in delivery_logs(gateway, created["id"], 1)] == [410]


def test_an_unreachable_receiver_is_retried_and_logged(gateway, alice):
    from tests.harness import free_port

    created = alice.post(CREATE, json={"input": {"text": "hi"},
                                       "webhook_completed": f"http://127.0.0.1:{free_port()}/nobody"}).json()
    attempts = delivery_logs(gateway, created["id"], 5)
    assert len(attempts) == 5
    assert all(r["status"] == 502 and "webhook delivery failed" in r["error"] for r in attempts)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, fake_replicate):
    """Two workers, isolation off: the relay needs neither one worker nor isolation."""
    from tests.conftest import REPLICATE_TOKEN, replicate_provider
    from tests.harness import GatewayProcess

    process = GatewayProcess(tmp_path_factory.mktemp("relay") / "data", providers=[replicate_provider(fake_replicate[0].url)],
                             env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}, workers=2,
                             settings={"replicate_isolate_predictions": False})
    with process:
        yield process


def test_every_worker_relays_and_refuses_replays_with_the_same_store(two_workers, receiver, fake_replicate):
    _, state = fake_replicate
    with tenant(two_workers, "carol") as carol:
        ids = [carol.post(CREATE, json={"input": {"text": f"n{i}"}, "webhook_completed": receiver.hook()}).json()["id"]
               for i in range(4)]
        got = receiver.wait_for(lambda got: {r.json()["id"] for r in got} >= set(ids))
        secrets = [official_client(two_workers, carol).webhooks.default.secret() for _ in range(6)]
    assert len({secret.key for secret in secrets}) == 1  # whichever worker answers, the same derived secret
    for event in got:
        replicate.Client().webhooks.validate(headers=event.headers, body=event.body.decode(), secret=secrets[0])
    finals = [delivered_to_gateway(state, i, "completed")[-1] for i in ids]
    for final in finals * 2:  # each worker in turn: the receipts are in the store, not in a worker
        assert post_event(two_workers, final.headers, final.body).status_code == 409


def test_forged_events_do_not_each_ask_replicate_for_the_secret(gateway, alice, receiver, fake_replicate):
    _, state = fake_replicate
    alice.post(CREATE, json={"input": {"text": "hi"}, "webhook_completed": receiver.hook()})
    receiver.wait_for(finished)  # the account's secret is cached by now
    asked = len(state.requests_to("/v1/webhooks/default/secret"))
    body = b'{"id": "forged", "status": "succeeded"}'
    for _ in range(5):
        forged = post_event(gateway, signed_headers(body, secret="whsec_" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC"), body)
        assert forged.status_code == 401
    assert len(state.requests_to("/v1/webhooks/default/secret")) <= asked + 1


def test_polls_cancels_and_lists_show_the_caller_its_own_webhook(gateway, alice, receiver, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/echo", polls=100)  # still running when it is polled, listed and canceled
    created = alice.post(CREATE, json={"input": {"text": "hi"}, "webhook": receiver.hook(),
                                       "webhook_events_filter": ["start", "completed"]}).json()
    assert state.prediction(created["id"]).webhook.startswith(gateway.v1 + "/provider-webhooks/")
    polled = alice.get(f"/predictions/{created['id']}").json()
    assert (polled["webhook"], polled["webhook_events_filter"]) == (receiver.hook(), ["start", "completed"])
    listed = [p for p in alice.get("/predictions").json()["results"] if p["id"] == created["id"]]
    assert listed and listed[0]["webhook"] == receiver.hook()
    canceled = alice.post(f"/predictions/{created['id']}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["webhook"] == receiver.hook()
