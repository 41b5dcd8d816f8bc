"""The logs API over real HTTP: list with filters and cursor paging, one record in detail, JSONL and CSV
export, Portkey's feedback, the analytics summary, and who may call them.

A gateway process and fake upstreams of this module's own, so the traffic below is the only traffic
and the analytics totals are known exactly. Every request carries ``x-portkey-metadata`` with this
run's id; each query filters on it as well.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import secrets
import sqlite3
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
import pytest

from modelport.control.logs import jsonl_chunks
from modelport.store import SQLiteLogStore
from modelport.store.log_base import LOG_COLUMNS, SUMMARY_FIELDS
from modelport.store.migrations import apply_migrations
from tests.conftest import OPENAI_KEY, REPLICATE_TOKEN, replicate_provider
from tests.fakes.openai import make_openai_app
from tests.fakes.replicate import start_fake_replicate
from tests.fakes.server import FakeServer
from tests.harness import GatewayProcess, free_port

RUN = secrets.token_hex(4)
CHAT = "/chat/completions"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Any]]:
    openai_app = make_openai_app(api_key=OPENAI_KEY)
    replicate_server, _ = start_fake_replicate(token=REPLICATE_TOKEN)
    with FakeServer(openai_app) as openai_server:
        yield {"openai": openai_server, "openai_state": openai_app["openai"], "replicate": replicate_server}
    replicate_server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, Any]) -> Iterator[GatewayProcess]:
    providers = [
        replicate_provider(upstreams["replicate"].url),
        {"slug": "openai-test", "provider": "openai", "secret_env": "TEST_OPENAI_KEY",
         "custom_host": upstreams["openai"].url + "/v1"},
        replicate_provider(f"http://127.0.0.1:{free_port()}", slug="replicate-down"),  # nothing listens there
    ]  # fmt: skip
    env = {"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, "TEST_OPENAI_KEY": OPENAI_KEY}
    with GatewayProcess(tmp_path_factory.mktemp("logs-api") / "data", providers=providers, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=30) as client:
        yield client


def new_key(admin: httpx.Client, *scopes: str) -> tuple[str, str]:
    created = admin.post("/api-keys", json={"name": f"logs-test-{secrets.token_hex(3)}", "scopes": list(scopes)})
    assert created.status_code == 200, created.text
    return created.json()["id"], created.json()["key"]


def call(admin: httpx.Client, method: str, path: str, provider: str, metadata: dict[str, str], *,
         key: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"x-portkey-provider": provider, "x-portkey-metadata": orjson.dumps({"run": RUN, **metadata}).decode()}
    if key is not None:
        headers["x-portkey-api-key"] = key
    return admin.request(method, path, headers=headers, **kwargs)


def chat(model: str, text: str) -> dict[str, Any]:
    return {"json": {"model": model, "messages": [{"role": "user", "content": text}]}}


def logs(admin: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    reply = admin.get("/logs", params={"metadata.run": RUN, "limit": 1000, **filters})
    assert reply.status_code == 200, reply.text
    assert reply.json()["next_cursor"] is None
    return reply.json()["data"]


@pytest.fixture(scope="module")
def traffic(admin: httpx.Client, upstreams: dict[str, Any]) -> dict[str, Any]:
    """Ten requests of known shape, made once; returns what the tests need to know about them."""
    inference_id, inference_key = new_key(admin, "inference")
    state = upstreams["openai_state"]
    def ask(user: str, model: str, text: str, key: str | None = None) -> httpx.Response:
        return call(admin, "POST", CHAT, "@openai-test", {"user": user}, key=key, **chat(model, text))

    replies = [
        ask("alice", "gpt-4o-mini", "one two three"),
        ask("alice", "gpt-4o-mini", "four"),
        ask("bob", "gpt-4o-mini", "five six", key=inference_key),
        ask("bob", "gpt-4o", "seven", key=inference_key),
    ]
    state.delay = 0.4  # two slow answers, for the latency percentiles
    try:
        replies += [ask("carol", "gpt-4o", f"slow {i}") for i in range(2)]
    finally:
        state.delay = 0.0
    state.fail_next(1, 500)
    replies.append(ask("carol", "gpt-4o", "fails upstream"))
    replies.append(call(admin, "GET", "/models/test/echo", "@replicate-test", {"user": "alice"}))
    prediction = call(admin, "POST", "/models/test/echo/predictions", "@replicate-test", {"user": "dave"},
                      json={"input": {"text": "hello"}})
    replies.append(prediction)
    replies.append(call(admin, "GET", "/models/test/echo", "@replicate-down", {"user": "dave"}))
    assert [r.status_code for r in replies] == [200] * 6 + [500, 200, 201, 502], [r.text[:200] for r in replies]
    deadline = time.monotonic() + 15
    while len(found := logs(admin)) < len(replies) and time.monotonic() < deadline:
        time.sleep(0.1)  # the log writer inserts in batches, off the request path
    assert len(found) == len(replies)
    return {
        "records": found,
        "trace_ids": [r.headers["x-portkey-trace-id"] for r in replies],
        "inference_key_id": inference_id,
        "inference_key": inference_key,
        "prediction_id": prediction.json()["id"],
    }


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in records}


def epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


# -- listing -----------------------------------------------------------------------------------------
def test_every_request_is_listed_newest_first_with_summary_fields(traffic: dict[str, Any]) -> None:
    records = traffic["records"]
    assert {r["trace_id"] for r in records} == set(traffic["trace_ids"])
    order = [(r["created_at"], r["id"]) for r in records]
    assert order == sorted(order, reverse=True)
    for record in records:
        assert set(record) == set(SUMMARY_FIELDS)
        assert record["created_at"].endswith("Z") and len(record["created_at"]) == len("2030-01-01T00:00:00.000Z")
        assert isinstance(record["gateway_exception"], bool) and isinstance(record["stream"], bool)
        assert record["metadata"]["run"] == RUN
    down = next(r for r in records if r["slug"] == "replicate-down")
    assert down["status"] == 502 and down["gateway_exception"] is True and down["error"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"provider": "openai"}, lambda r: r["provider"] == "openai"),
        ({"provider": "replicate"}, lambda r: r["provider"] == "replicate"),
        ({"slug": "replicate-test"}, lambda r: r["slug"] == "replicate-test"),
        ({"status": "502"}, lambda r: r["status"] == 502),
        ({"status": "error"}, lambda r: r["status"] >= 400),
        ({"status": "success"}, lambda r: r["status"] < 400),
        ({"model": "gpt-4o"}, lambda r: r["model"] == "gpt-4o"),
        ({"endpoint": "chat"}, lambda r: r["endpoint"] == "chat"),
        ({"endpoint": "proxy"}, lambda r: r["endpoint"] == "proxy"),
        ({"metadata.user": "alice"}, lambda r: r["metadata"]["user"] == "alice"),
        ({"metadata.user": "bob", "model": "gpt-4o"},
         lambda r: r["metadata"]["user"] == "bob" and r["model"] == "gpt-4o"),
        ({"metadata.user": "nobody"}, lambda r: False),
        ({"q": "/models/test/echo"}, lambda r: "/models/test/echo" in r["path"]),
        ({"provider": "openai", "status": "error"}, lambda r: r["provider"] == "openai" and r["status"] >= 400),
    ],
    ids=lambda value: "&".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else "",
)
def test_filter_selects_exactly_the_matching_records(admin: httpx.Client, traffic: dict[str, Any],
                                                     filters: dict[str, str], expected: Any) -> None:  # fmt: skip
    wanted = {r["id"] for r in traffic["records"] if expected(r)}
    assert ids(logs(admin, **filters)) == wanted
    assert wanted or filters == {"metadata.user": "nobody"}  # each filter is tried on records that exist


def test_key_trace_and_prediction_filters(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    by_key = logs(admin, key_id=traffic["inference_key_id"])
    assert len(by_key) == 2 and {r["metadata"]["user"] for r in by_key} == {"bob"}
    trace_id = traffic["trace_ids"][1]
    assert [r["trace_id"] for r in logs(admin, trace_id=trace_id)] == [trace_id]
    by_prediction = logs(admin, prediction_id=traffic["prediction_id"])
    assert [r["metadata"]["user"] for r in by_prediction] == ["dave"]
    assert by_prediction[0]["prediction_id"] == traffic["prediction_id"]


def test_time_range_accepts_iso_and_epoch_ms(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    records = sorted(traffic["records"], key=lambda r: (r["created_at"], r["id"]))
    middle = records[len(records) // 2]["created_at"]
    after = {r["id"] for r in records if r["created_at"] >= middle}
    before = {r["id"] for r in records if r["created_at"] < middle}
    assert ids(logs(admin, since=middle)) == after
    assert ids(logs(admin, since=str(epoch_ms(middle)))) == after
    assert ids(logs(admin, until=middle)) == before
    assert ids(logs(admin, until=middle.replace("Z", "+00:00"))) == before
    assert logs(admin, since="2000-01-01T00:00:00", until="2000-01-02T00:00:00") == []


def test_paging_with_a_small_limit_has_no_gaps_or_duplicates(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    seen: list[str] = []
    cursor = None
    for page_number in itertools.count():
        params = {"metadata.run": RUN, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/logs", params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 3
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page_number < 10
    assert seen == [r["id"] for r in traffic["records"]]  # same order, each once


def test_paging_keeps_its_place_while_new_records_arrive(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    before = admin.get("/logs", params={"limit": 1000}).json()["data"]
    first = admin.get("/logs", params={"limit": 4}).json()
    late = call(admin, "GET", "/models/test/echo", "@replicate-test", {"run": f"{RUN}-late"})
    deadline = time.monotonic() + 15
    while not admin.get("/logs", params={"trace_id": late.headers["x-portkey-trace-id"]}).json()["data"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    rest = admin.get("/logs", params={"limit": 1000, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in first["data"] + rest["data"]] == [r["id"] for r in before]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"status": "teapot"}, "status"),
        ({"provder": "openai"}, "provder"),
        ({"metadata.": "x"}, "metadata"),
    ],
)
def test_invalid_query_is_refused_with_a_message(admin: httpx.Client, params: dict[str, str], message: str) -> None:
    reply = admin.get("/logs", params=params)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]["message"]


# -- one record --------------------------------------------------------------------------------------
def test_detail_has_headers_bodies_attempts_usage_and_cost(admin: httpx.Client, gateway: GatewayProcess,
                                                           traffic: dict[str, Any]) -> None:  # fmt: skip
    first = next(r for r in traffic["records"] if r["trace_id"] == traffic["trace_ids"][0])
    record = admin.get(f"/logs/{first['id']}").json()
    assert {k: record[k] for k in SUMMARY_FIELDS} == first
    assert orjson.loads(record["response_body"])["choices"][0]["message"]["content"] == "Echo: one two three"
    assert record["response_headers"]
    assert record["request_content_type"].startswith("application/json")
    assert record["response_content_type"].startswith("application/json")
    assert gateway.admin_key not in orjson.dumps(record).decode()  # the gateway key is never stored
    assert [a["provider"] for a in record["attempts"]] == ["openai"]
    assert record["attempts"][0]["status"] == 200 and record["attempts"][0]["slug"] == "openai-test"
    assert (record["input_tokens"], record["output_tokens"]) == (4, 4)  # the fake: a token per word, +1 per message
    assert record["total_tokens"] == 8 and record["usage"]
    assert record["cost_status"] in ("priced", "estimated", "unpriced")
    assert (record["cost_usd"] is None) == (record["cost_status"] == "unpriced")
    assert record["feedback"] == []
    assert record["last_used_index"] is None  # no config routed this request, so no target index


def test_detail_keeps_the_request_body(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    first = next(r for r in traffic["records"] if r["trace_id"] == traffic["trace_ids"][0])
    record = admin.get(f"/logs/{first['id']}").json()
    assert orjson.loads(record["request_body"])["messages"][0]["content"] == "one two three"


def test_span_headers_build_a_trace_tree(admin: httpx.Client) -> None:
    trace = f"agent-run-{secrets.token_hex(4)}"
    def step(span: str, parent: str | None, name: str) -> None:
        headers = {"x-portkey-trace-id": trace, "x-portkey-span-id": span, "x-portkey-span-name": name}
        if parent:
            headers["x-portkey-parent-span-id"] = parent
        # not through call(): these records must stay out of the module's RUN, whose counts the tests check
        answer = admin.post(CHAT, headers={"x-portkey-provider": "@openai-test", **headers}, **chat("gpt-4o-mini", name))
        assert answer.status_code == 200, answer.text

    step("plan", None, "plan the work")
    step("search", "plan", "search")
    step("answer", "plan", "write the answer")
    step("check", "answer", "check the answer")
    deadline = time.monotonic() + 15
    while (reply := admin.get(f"/logs/traces/{trace}")).status_code == 404 or sum(
            1 for _ in _walk(reply.json()["spans"])) < 4:  # fmt: skip
        assert time.monotonic() < deadline, reply.text
        time.sleep(0.1)
    tree = reply.json()
    assert tree["object"] == "trace" and tree["truncated"] is False
    (root,) = tree["spans"]
    assert (root["span_id"], root["span_name"]) == ("plan", "plan the work")
    assert [child["span_id"] for child in root["children"]] == ["search", "answer"]  # in the order they ran
    assert [grandchild["span_id"] for grandchild in root["children"][1]["children"]] == ["check"]
    assert root["logs"][0]["trace_id"] == trace and root["logs"][0]["parent_span_id"] is None
    assert admin.get("/logs/traces/no-such-trace").status_code == 404
    bad = admin.post(CHAT, headers={"x-portkey-provider": "@openai-test", "x-portkey-span-id": "a" * 200},
                     **chat("gpt-4o-mini", "x"))
    assert bad.status_code == 400 and "x-portkey-span-id" in bad.json()["error"]["message"]


def _walk(spans: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for span in spans:
        yield span
        yield from _walk(span["children"])


def test_unknown_log_id_is_404(admin: httpx.Client) -> None:
    reply = admin.get("/logs/log_000000000000000000000000")
    assert reply.status_code == 404 and reply.headers["x-portkey-gateway-exception"] == "true"


# -- export ------------------------------------------------------------------------------------------
def test_jsonl_export_streams_the_same_records(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    with admin.stream("GET", "/logs/export", params={"metadata.run": RUN}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/x-ndjson"
        assert reply.headers["content-disposition"].startswith('attachment; filename="modelport-logs-')
        assert reply.headers["content-disposition"].endswith('.jsonl"')
        assert "content-length" not in reply.headers  # sent as it is read, not assembled first
        lines = list(reply.iter_lines())
    assert [orjson.loads(line) for line in lines] == traffic["records"]


def test_full_export_carries_bodies_and_attempts(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    reply = admin.get("/logs/export", params={"metadata.run": RUN, "full": "true", "trace_id": traffic["trace_ids"][0]})
    [record] = [orjson.loads(line) for line in reply.text.splitlines()]
    assert "Echo: one two three" in record["response_body"]
    assert record["attempts"][0]["provider"] == "openai"


def test_csv_export_has_a_header_and_one_row_per_record(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    reply = admin.get("/logs/export", params={"metadata.run": RUN, "format": "csv"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert reply.headers["content-disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert list(rows[0]) == list(SUMMARY_FIELDS)
    assert [row["id"] for row in rows] == [r["id"] for r in traffic["records"]]
    by_id = {r["id"]: r for r in traffic["records"]}
    for row in rows:
        record = by_id[row["id"]]
        assert orjson.loads(row["metadata"]) == record["metadata"]
        assert row["status"] == str(record["status"])
        assert row["gateway_exception"] == ("true" if record["gateway_exception"] else "false")
        assert row["cost_usd"] == ("" if record["cost_usd"] is None else str(record["cost_usd"]))


def test_csv_export_of_nothing_is_just_the_header(admin: httpx.Client) -> None:
    reply = admin.get("/logs/export", params={"metadata.run": "no-such-run", "format": "csv"})
    assert reply.text == ",".join(SUMMARY_FIELDS) + "\r\n"


def test_export_reads_rows_lazily() -> None:
    """The encoder pulls rows as it writes: an endless source still yields its first piece."""
    endless = ({"id": f"log_{n}", "metadata": {}} for n in itertools.count())
    first = next(jsonl_chunks(endless))
    assert first.startswith(b'{"id":"log_0"') and 0 < len(first) < 1024 * 1024


def test_export_format_must_be_jsonl_or_csv(admin: httpx.Client) -> None:
    assert admin.get("/logs/export", params={"format": "xml"}).status_code == 400


# -- feedback ----------------------------------------------------------------------------------------
def test_feedback_is_created_singly_or_as_a_list_and_shows_on_the_record(admin: httpx.Client,
                                                                          traffic: dict[str, Any]) -> None:
    trace_id = traffic["trace_ids"][2]
    one = admin.post("/feedback", json={"trace_id": trace_id, "value": 5, "metadata": {"by": "test"}})
    assert one.status_code == 200, one.text
    assert one.json()["status"] == "success" and one.json()["message"] == "feedback created"
    [first_id] = one.json()["feedback_ids"]
    many = admin.post("/feedback", json=[{"trace_id": trace_id, "value": -3, "weight": 0.5},
                                         {"trace_id": trace_id, "value": 10, "weight": 0}])  # fmt: skip
    assert many.status_code == 200, many.text
    assert len(many.json()["feedback_ids"]) == 2 and all(i.startswith("fb_") for i in many.json()["feedback_ids"])
    [record] = logs(admin, trace_id=trace_id)
    shown = admin.get(f"/logs/{record['id']}").json()["feedback"]
    assert [(f["id"], f["value"], f["weight"]) for f in shown] == [
        (first_id, 5, 1.0), (many.json()["feedback_ids"][0], -3, 0.5), (many.json()["feedback_ids"][1], 10, 0.0)]
    assert shown[0]["metadata"] == {"by": "test"}


def test_feedback_update_changes_only_what_it_names(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    trace_id = traffic["trace_ids"][3]
    created = admin.post("/feedback", json={"trace_id": trace_id, "value": 1, "metadata": {"a": "1"}})
    [feedback_id] = created.json()["feedback_ids"]
    updated = admin.put(f"/feedback/{feedback_id}", json={"value": -7})
    assert updated.status_code == 200, updated.text
    assert updated.json() == {"status": "success", "message": "feedback updated", "feedback_ids": [feedback_id]}
    [record] = logs(admin, trace_id=trace_id)
    [shown] = admin.get(f"/logs/{record['id']}").json()["feedback"]
    assert (shown["value"], shown["weight"], shown["metadata"]) == (-7, 1.0, {"a": "1"})


def test_feedback_through_the_portkey_sdk(gateway: GatewayProcess, traffic: dict[str, Any]) -> None:
    from portkey_ai import Portkey

    portkey = Portkey(api_key=gateway.admin_key, base_url=gateway.v1)
    created = portkey.feedback.create(trace_id=traffic["trace_ids"][4], value=2, weight=0.25)
    assert created.status == "success" and len(created.feedback_ids) == 1
    bulk = portkey.feedback.bulk_create(feedbacks=[{"trace_id": traffic["trace_ids"][4], "value": -1}])
    assert len(bulk.feedback_ids) == 1
    updated = portkey.feedback.update(feedback_id=created.feedback_ids[0], value=9)
    assert updated.feedback_ids == created.feedback_ids


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"trace_id": "t", "value": 11}, "value"),
        ({"trace_id": "t", "value": -11}, "value"),
        ({"trace_id": "t", "value": 1.5}, "value"),
        ({"trace_id": "t", "value": 1, "weight": 2}, "weight"),
        ({"trace_id": "t", "value": 1, "weight": -0.1}, "weight"),
        ({"value": 1}, "trace_id"),
        ({"trace_id": "t"}, "value"),
        ({"trace_id": "t", "value": 1, "metadata": "x"}, "metadata"),
        ({"trace_id": "t", "value": 1, "extra": True}, "extra"),
        ([], "list"),
    ],
)
def test_invalid_feedback_is_a_400_that_names_the_field(admin: httpx.Client, body: Any, message: str) -> None:
    reply = admin.post("/feedback", json=body)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]["message"]


def test_a_bad_item_in_a_feedback_list_creates_none_of_it(admin: httpx.Client) -> None:
    trace_id = f"trace-{secrets.token_hex(4)}"
    reply = admin.post("/feedback", json=[{"trace_id": trace_id, "value": 1}, {"trace_id": trace_id, "value": 99}])
    assert reply.status_code == 400 and "feedback[1]" in reply.json()["error"]["message"]
    assert admin.post("/feedback", json={"trace_id": trace_id, "value": 1}).status_code == 200


def test_feedback_update_errors(admin: httpx.Client) -> None:
    assert admin.put("/feedback/fb_missing", json={"value": 1}).status_code == 404
    [feedback_id] = admin.post("/feedback", json={"trace_id": "t-update", "value": 1}).json()["feedback_ids"]
    assert admin.put(f"/feedback/{feedback_id}", json={"value": 20}).status_code == 400
    assert admin.put(f"/feedback/{feedback_id}", json={}).status_code == 400
    assert admin.put(f"/feedback/{feedback_id}", json={"trace_id": "other"}).status_code == 400


# -- analytics ---------------------------------------------------------------------------------------
def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def test_analytics_totals_and_percentiles_match_the_records(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    records = traffic["records"]
    summary = admin.get("/analytics/summary", params={"metadata.run": RUN, "bucket": "minute"}).json()
    totals = summary["totals"]
    assert totals["requests"] == len(records) == 10
    assert totals["errors"] == 2 and totals["error_rate"] == pytest.approx(0.2)
    assert totals["input_tokens"] == sum(r["input_tokens"] or 0 for r in records)
    assert totals["output_tokens"] == sum(r["output_tokens"] or 0 for r in records)
    assert totals["input_tokens"] > 0
    assert totals["cost_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in records))
    assert totals["unpriced_requests"] == sum(r["cost_status"] == "unpriced" for r in records)
    latencies = [r["latency_ms"] for r in records]
    for p in (50, 95, 99):
        assert totals[f"p{p}_ms"] == pytest.approx(nearest_rank(latencies, p), abs=0.001)
    assert totals["p50_ms"] < 400 <= totals["p95_ms"]  # two of ten answers were held 0.4 s upstream
    assert sum(point["requests"] for point in summary["series"]) == 10
    assert sum(point["errors"] for point in summary["series"]) == 2
    for point in summary["series"]:
        assert point["t"].endswith(":00.000Z")  # minute buckets start on the minute


def test_analytics_groups_by_provider_model_and_key(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    records = traffic["records"]

    def groups(by: str) -> dict[str | None, tuple[int, int]]:
        reply = admin.get("/analytics/summary", params={"metadata.run": RUN, "group_by": by})
        assert reply.status_code == 200, reply.text
        return {g["key"]: (g["requests"], g["errors"]) for g in reply.json()["groups"]}

    assert groups("provider") == {"openai": (7, 1), "replicate": (3, 1)}
    requests = Counter(r["model"] for r in records)
    errors = Counter(r["model"] for r in records if r["status"] >= 400)
    assert groups("model") == {model: (count, errors[model]) for model, count in requests.items()}
    assert requests["gpt-4o"] == 4
    assert groups("key")[traffic["inference_key_id"]] == (2, 0)


def test_analytics_filters_apply(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    reply = admin.get("/analytics/summary", params={"metadata.run": RUN, "provider": "replicate", "status": "error"})
    assert reply.json()["totals"]["requests"] == 1
    assert admin.get("/analytics/summary", params={"bucket": "week"}).status_code == 400
    assert admin.get("/analytics/summary", params={"group_by": "colour"}).status_code == 400


# -- who may call ------------------------------------------------------------------------------------
READS = [("GET", "/logs"), ("GET", "/logs/log_x"), ("GET", "/logs/export"), ("GET", "/analytics/summary")]
WRITES = [("POST", "/feedback"), ("PUT", "/feedback/fb_x")]
FEEDBACK = {"trace_id": "t-auth", "value": 1}


@pytest.mark.parametrize(("method", "path"), READS + WRITES)
def test_no_key_is_401(gateway: GatewayProcess, method: str, path: str) -> None:
    reply = httpx.request(method, gateway.v1 + path, json=FEEDBACK if method != "GET" else None)
    assert reply.status_code == 401


@pytest.mark.parametrize(("method", "path"), READS + WRITES)
def test_a_key_without_logs_or_inference_scopes_is_403(admin: httpx.Client, gateway: GatewayProcess,
                                                       method: str, path: str) -> None:
    _, key = new_key(admin, "configs.read")
    headers = {"x-portkey-api-key": key}
    reply = httpx.request(method, gateway.v1 + path, headers=headers, json=FEEDBACK if method != "GET" else None)
    assert reply.status_code == 403 and "logs." in reply.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path"), READS)
def test_an_inference_key_cannot_read_logs(gateway: GatewayProcess, traffic: dict[str, Any], method: str, path: str) -> None:
    reply = httpx.request(method, gateway.v1 + path, headers={"x-portkey-api-key": traffic["inference_key"]})
    assert reply.status_code == 403 and "logs.read" in reply.json()["error"]["message"]


def test_an_inference_key_gives_feedback_on_its_own_requests(gateway: GatewayProcess, traffic: dict[str, Any]) -> None:
    # As on Portkey's hosted gateway, the key that made a completion may rate it: no second key needed.
    inference = httpx.Client(base_url=gateway.v1, headers={"x-portkey-api-key": traffic["inference_key"]})
    own, others = traffic["trace_ids"][2], traffic["trace_ids"][0]  # made with the inference key / the admin key
    created = inference.post("/feedback", json={"trace_id": own, "value": 3})
    assert created.status_code == 200, created.text
    [feedback_id] = created.json()["feedback_ids"]
    assert inference.put(f"/feedback/{feedback_id}", json={"value": 4}).status_code == 200
    for body in ({"trace_id": others, "value": 1}, [{"trace_id": own, "value": 1}, {"trace_id": others, "value": 1}],
                 {"trace_id": "t-never-made", "value": 1}):
        refused = inference.post("/feedback", json=body)
        assert refused.status_code == 403 and "'logs.write'" in refused.json()["error"]["message"], refused.text
    [admins] = httpx.post(gateway.v1 + "/feedback", headers={"x-portkey-api-key": gateway.admin_key},
                          json={"trace_id": others, "value": 1}).json()["feedback_ids"]
    assert inference.put(f"/feedback/{admins}", json={"value": 2}).status_code == 403


def test_an_inference_key_rates_a_request_at_once_through_the_portkey_sdk(gateway: GatewayProcess,
                                                                          traffic: dict[str, Any]) -> None:
    from portkey_ai import Portkey

    trace_id = f"t-rated-{secrets.token_hex(4)}"
    portkey = Portkey(api_key=traffic["inference_key"], base_url=gateway.v1, provider="@openai-test", trace_id=trace_id)
    portkey.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    created = portkey.feedback.create(trace_id=trace_id, value=1)  # right away: before its record is stored, maybe
    assert created.status == "success" and len(created.feedback_ids) == 1


def test_logs_read_reads_and_logs_write_gives_feedback(admin: httpx.Client, gateway: GatewayProcess) -> None:
    _, reader = new_key(admin, "logs.read")
    _, writer = new_key(admin, "logs.write")
    assert httpx.get(gateway.v1 + "/logs", headers={"x-portkey-api-key": reader}).status_code == 200
    assert httpx.post(gateway.v1 + "/feedback", headers={"x-portkey-api-key": reader}, json=FEEDBACK).status_code == 403
    assert httpx.post(gateway.v1 + "/feedback", headers={"x-portkey-api-key": writer}, json=FEEDBACK).status_code == 200
    assert httpx.get(gateway.v1 + "/logs", headers={"x-portkey-api-key": writer}).status_code == 403


# -- speed -------------------------------------------------------------------------------------------
def seed_logs(db_path: Path, count: int) -> None:
    """``count`` records, one a second up to now, over five providers, models and keys."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn)
    conn.close()
    now = int(time.time() * 1000)
    store = SQLiteLogStore(db_path)
    with store.batch() as batch:
        for start in range(0, count, 10_000):
            batch.append_logs([{**dict.fromkeys(LOG_COLUMNS), **{
                "id": f"log_{n:024x}", "trace_id": f"trace-{n}", "created_at": now - (count - n) * 1000,
                "key_id": f"key_{n % 7}", "provider": PROVIDERS[n % 5], "model": f"model-{n % 5}", "endpoint": "chat",
                "method": "POST", "path": "/v1/chat/completions", "status": 500 if n % 20 == 0 else 200,
                "latency_ms": float(n % 900), "gateway_exception": 0, "stream": 0, "cost_status": "unpriced",
                "metadata": '{"team":"t%d"}' % (n % 10), "request_body": b"x" * 500, "response_body": b"y" * 1500,
            }} for n in range(start, min(start + 10_000, count))])  # fmt: skip
    store.close()


PROVIDERS = ("replicate", "openai", "anthropic", "google", "cohere")


@pytest.mark.slow
def test_listing_100k_records_answers_well_under_100_ms(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    seed_logs(data_dir / "modelport.db", 100_000)
    with GatewayProcess(data_dir) as process, httpx.Client(base_url=process.v1, headers=process.headers()) as client:
        second_page = client.get("/logs", params={"provider": "cohere"}).json()["next_cursor"]
        hour_ago = str(int(time.time() * 1000) - 3_600_000)
        cases = ({}, {"provider": "openai"}, {"status": "error"}, {"status": "500"}, {"key_id": "key_3"},
                 {"model": "model-2"}, {"trace_id": "trace-77"}, {"endpoint": "chat"}, {"metadata.team": "t3"},
                 {"provider": "cohere", "cursor": second_page}, {"since": hour_ago, "provider": "google"})
        for params in cases:
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                reply = client.get("/logs", params=params)
                timings.append(time.perf_counter() - started)
                assert reply.status_code == 200 and len(reply.json()["data"]) == (1 if "trace_id" in params else 50)
            assert min(timings) < 0.05, (params, timings)
