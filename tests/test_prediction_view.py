"""The prediction view of the logs API: one row per Replicate prediction, with its cost on the
prediction and every log record of it as its lifecycle, oldest first."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from tests.conftest import REPLICATE_TOKEN
from tests.harness import GatewayProcess
from tests.test_replicate_cost import CPU, REPLICATE, client, run_to_end, start_gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_replicate, fake_openai):
    process = start_gateway(tmp_path_factory.mktemp("prediction-view"), fake_replicate, fake_openai,
                            {"models": {"test/echo": "cpu"}})
    yield process
    process.stop()


@pytest.fixture
def admin(gateway: GatewayProcess):
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=20) as http:
        yield http


def ended(admin: httpx.Client, prediction_id: str, records: int, timeout: float = 15) -> dict:
    """The prediction once its end is recorded and its lifecycle holds ``records`` log records."""
    deadline = time.monotonic() + timeout
    while True:
        reply = admin.get(f"/logs/predictions/{prediction_id}")
        if reply.status_code == 200 and reply.json()["ended_at"] and len(reply.json()["lifecycle"]) >= records:
            return reply.json()
        assert time.monotonic() < deadline, f"{prediction_id}: {reply.status_code} {reply.text[:500]}"
        time.sleep(0.05)


def test_a_prediction_shows_its_cost_hardware_and_every_step(gateway, admin):
    prediction = run_to_end(gateway, "/models/test/echo/predictions", {"input": {"text": "hello"}})
    view = ended(admin, prediction["id"], records=4)  # create, poll (processing), poll (succeeded), one more
    assert (view["object"], view["id"], view["status"], view["model"]) == ("prediction", prediction["id"], "succeeded", "test/echo")
    assert view["predict_time"] == 1.5 and view["cost_usd"] == pytest.approx(1.5 * CPU)
    assert view["cost_status"] == "priced" and "cpu" in view["cost_reason"]
    steps = view["lifecycle"]
    assert [s["step"] for s in steps] == ["create", "poll", "poll", "poll"]
    assert [s["saw_status"] for s in steps] == ["starting", "processing", "succeeded", "succeeded"]
    assert [s["saw_end"] for s in steps] == [False, False, True, False]
    assert view["ended_on_log_id"] == steps[2]["log_id"] and view["first_log_id"] == steps[0]["log_id"]
    assert [s["created_at"] for s in steps] == sorted(s["created_at"] for s in steps)
    assert steps[0]["method"] == "POST" and steps[0]["path"] == "/v1/models/test/echo/predictions"
    assert view["created_at"] <= view["ended_at"] and not view["lifecycle_truncated"]


def test_the_list_page_that_saw_the_end_is_part_of_the_lifecycle(gateway, admin, fake_replicate):
    with client(gateway) as http:
        created = http.post("/models/test/echo/predictions", json={"input": {"text": "listed"}}).json()
    upstream = {"Authorization": f"Bearer {REPLICATE_TOKEN}"}
    for _ in range(2):  # ended upstream without the gateway seeing it: only the next list page shows it
        httpx.get(f"{fake_replicate[0].url}/v1/predictions/{created['id']}", headers=upstream).raise_for_status()
    with client(gateway) as http:
        assert http.get("/predictions").status_code == 200
    view = ended(admin, created["id"], records=2)
    assert [(s["step"], s["saw_status"], s["saw_end"]) for s in view["lifecycle"]] == [
        ("create", "starting", False), ("list", "succeeded", True)]
    assert view["cost_usd"] == pytest.approx(1.5 * CPU)


def test_predictions_list_newest_first_with_filters_and_pages(gateway, admin):
    first = run_to_end(gateway, "/models/test/echo/predictions", {"input": {"text": "one"}})
    second = run_to_end(gateway, "/models/test/echo/predictions", {"input": {"text": "two"}})
    ended(admin, second["id"], records=4)
    newest = admin.get("/logs/predictions", params={"limit": 1}).json()
    assert [p["id"] for p in newest["data"]] == [second["id"]] and newest["next_cursor"]
    following = admin.get("/logs/predictions", params={"limit": 1, "cursor": newest["next_cursor"]}).json()
    assert [p["id"] for p in following["data"]] == [first["id"]]
    row = newest["data"][0]
    assert row["status"] == "succeeded" and row["cost_usd"] == pytest.approx(1.5 * CPU) and "lifecycle" not in row
    everything = admin.get("/logs/predictions", params={"limit": 1000}).json()["data"]
    ids = [p["id"] for p in everything]
    assert ids.index(second["id"]) < ids.index(first["id"])
    assert all(p["model"] == "test/echo" for p in admin.get("/logs/predictions", params={"model": "test/echo"}).json()["data"])
    assert admin.get("/logs/predictions", params={"model": "test/none"}).json()["data"] == []
    assert admin.get("/logs/predictions", params={"status": "failed", "model": "test/echo"}).json()["data"] == []
    key_id = row["key_id"]
    assert second["id"] in [p["id"] for p in admin.get("/logs/predictions", params={"key_id": key_id, "limit": 1000}).json()["data"]]
    assert admin.get("/logs/predictions", params={"key_id": "key-nobody"}).json()["data"] == []
    assert admin.get("/logs/predictions", params={"slug": "replicate-test", "limit": 1}).json()["data"][0]["id"] == second["id"]
    later = admin.get("/logs/predictions", params={"since": row["created_at"], "limit": 1000}).json()["data"]
    assert second["id"] in [p["id"] for p in later] and first["id"] not in [p["id"] for p in later]
    assert second["id"] not in [p["id"] for p in admin.get("/logs/predictions", params={"until": row["created_at"]}).json()["data"]]


@pytest.mark.parametrize("query", [{"stauts": "failed"}, {"status": "done"}, {"metadata.team": "a"}, {"cursor": "nope"}])
def test_a_wrong_filter_is_refused_not_ignored(admin, query):
    reply = admin.get("/logs/predictions", params=query)
    assert reply.status_code == 400 and reply.json()["error"]["message"]
    assert reply.headers["x-portkey-gateway-exception"] == "true"


def test_an_unknown_prediction_is_404(admin):
    reply = admin.get("/logs/predictions/p-never-seen")
    assert reply.status_code == 404 and "no prediction 'p-never-seen'" in reply.json()["error"]["message"]


def test_logs_read_sees_every_prediction_and_inference_alone_sees_none(gateway, admin):
    prediction = run_to_end(gateway, "/models/test/echo/predictions", {"input": {"text": "scoped"}})
    ended(admin, prediction["id"], records=4)
    keys = {}
    for scope in ("logs.read", "inference"):
        created = admin.post("/api-keys", json={"name": f"view-{scope}-{secrets.token_hex(3)}", "scopes": [scope]})
        keys[scope] = created.json()["key"]
    with httpx.Client(base_url=gateway.v1, timeout=20) as http:
        reader = {"x-portkey-api-key": keys["logs.read"]}
        assert prediction["id"] in [p["id"] for p in http.get("/logs/predictions", params={"limit": 1000}, headers=reader).json()["data"]]
        assert http.get(f"/logs/predictions/{prediction['id']}", headers=reader).json()["cost_usd"] == pytest.approx(1.5 * CPU)
        for path in ("/logs/predictions", f"/logs/predictions/{prediction['id']}"):
            refused = http.get(path, headers={"x-portkey-api-key": keys["inference"]})
            assert refused.status_code == 403 and "logs.read" in refused.json()["error"]["message"]


def test_a_cancel_that_ends_it_is_the_step_that_priced_it(gateway, admin):
    with client(gateway) as http:
        created = http.post("/models/test/echo/predictions", json={"input": {"text": "x", "predict_time": 3}}).json()
        assert http.get(f"/predictions/{created['id']}").json()["status"] == "processing"
        assert http.post(f"/predictions/{created['id']}/cancel").json()["status"] == "canceled"
    view = ended(admin, created["id"], records=3)
    assert view["status"] == "canceled" and view["cost_usd"] == pytest.approx(3 * CPU)
    assert [(s["step"], s["saw_status"], s["saw_end"]) for s in view["lifecycle"]] == [
        ("create", "starting", False), ("poll", "processing", False), ("cancel", "canceled", True)]


def test_without_stored_bodies_the_steps_still_say_which_one_priced_it(gateway, admin):
    created = admin.post("/api-keys", json={"name": f"no-bodies-{secrets.token_hex(3)}", "scopes": ["inference"],
                                            "log_bodies": False}).json()
    with httpx.Client(base_url=gateway.v1, timeout=20, headers={"x-portkey-api-key": created["key"], **REPLICATE}) as http:
        prediction = http.post("/models/test/echo/predictions", json={"input": {"text": "quiet"}}).json()
        while prediction["status"] not in ("succeeded", "failed", "canceled"):
            prediction = http.get(f"/predictions/{prediction['id']}").json()
    view = ended(admin, prediction["id"], records=3)
    assert view["key_id"] == created["id"] and view["cost_usd"] == pytest.approx(1.5 * CPU)
    assert [(s["step"], s["saw_status"], s["saw_end"]) for s in view["lifecycle"]] == [
        ("create", None, False), ("poll", None, False), ("poll", None, True)]
