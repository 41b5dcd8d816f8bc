"""``GET /metrics``: Prometheus text exposition of requests, errors, latency, tokens, cost and the log
writer's queue and spill counters, for the whole gateway (kept by its log service)."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPLICATE_TOKEN, replicate_provider
from tests.harness import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count my tokens please"}]}


def scrape(gateway) -> dict:
    response = httpx.get(gateway.url + "/metrics", timeout=5)  # no gateway key: scrapers carry none
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict, family: str, sample: str, **labels: str) -> float:
    return sum(s.value for s in families[family].samples if s.name == sample and labels.items() <= s.labels.items())


def wait_for(gateway, family: str, sample: str, at_least: float, **labels: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        families = scrape(gateway)
        if family in families and value(families, family, sample, **labels) >= at_least:
            return families
        assert time.monotonic() < deadline, f"{sample}{labels} stayed below {at_least}"
        time.sleep(0.05)


def test_requests_tokens_and_cost_are_counted(gateway):
    labels = {"provider": "openai", "endpoint": "chat", "status": "200"}
    before = scrape(gateway)
    requests_before = value(before, "modelport_requests", "modelport_requests_total", **labels) if "modelport_requests" in before else 0
    tokens_before = value(before, "modelport_tokens", "modelport_tokens_total", provider="openai") if "modelport_tokens" in before else 0
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    for _ in range(3):
        response = httpx.post(gateway.v1 + "/chat/completions", json=CHAT, timeout=20,
                              headers=gateway.headers(**{"x-portkey-provider": "@openai-test"}))
        assert response.status_code == 200
        for key in usage:
            usage[key] += response.json()["usage"][key]
    after = wait_for(gateway, "modelport_requests", "modelport_requests_total", requests_before + 3, **labels)
    after = wait_for(gateway, "modelport_tokens", "modelport_tokens_total", tokens_before + sum(usage.values()), provider="openai")
    assert value(after, "modelport_requests", "modelport_requests_total", **labels) == requests_before + 3
    assert value(after, "modelport_tokens", "modelport_tokens_total", provider="openai") == tokens_before + sum(usage.values())
    assert value(after, "modelport_cost_usd", "modelport_cost_usd_total", provider="openai") > 0


def test_errors_are_counted_by_kind(gateway, fake_replicate):
    _, replicate = fake_replicate
    before = scrape(gateway)
    errors = lambda families, kind: value(families, "modelport_request_errors", "modelport_request_errors_total", kind=kind) \
        if "modelport_request_errors" in families else 0
    replicate.fail_next(500, path="/v1/account")
    assert httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-provider": "@replicate-test"})).status_code == 500
    assert httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-provider": "@nowhere"})).status_code >= 400
    deadline = time.monotonic() + 10
    while (after := scrape(gateway)) and (errors(after, "provider") < errors(before, "provider") + 1 or errors(after, "gateway") < errors(before, "gateway") + 1):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert errors(after, "provider") == errors(before, "provider") + 1
    assert errors(after, "gateway") == errors(before, "gateway") + 1


def test_latency_histograms_are_well_formed(gateway):
    httpx.get(gateway.v1 + "/account", headers=gateway.headers(**{"x-portkey-provider": "@replicate-test"}))
    families = wait_for(gateway, "modelport_upstream_duration_seconds", "modelport_upstream_duration_seconds_count", 1, provider="replicate")
    for name in ("modelport_request_duration_seconds", "modelport_upstream_duration_seconds"):
        family = families[name]
        assert family.type == "histogram"
        buckets = [s for s in family.samples if s.name == name + "_bucket" and s.labels["provider"] == "replicate"]
        ordered = sorted(buckets, key=lambda s: float(s.labels["le"]))
        counts = [s.value for s in ordered]
        assert counts == sorted(counts), "cumulative buckets never decrease"
        assert float(ordered[-1].labels["le"]) == float("inf")
        assert counts[-1] == value(families, name, name + "_count", provider="replicate") > 0
        assert value(families, name, name + "_sum", provider="replicate") > 0


@pytest.mark.parametrize("family, kind", [
    ("modelport_log_queue_depth", "gauge"),
    ("modelport_log_spill_pending", "gauge"),
    ("modelport_log_spilled_records", "counter"),
    ("modelport_log_written_records", "counter"),
    ("modelport_log_write_failures", "counter"),
    ("modelport_unpriced_requests", "counter"),
])
def test_the_log_writer_reports_its_queue_and_spill(gateway, family, kind):
    families = scrape(gateway)
    assert families[family].type == kind
    if kind == "gauge":
        [sample] = families[family].samples
        assert sample.value >= 0 and sample.labels["pid"]


def test_every_worker_reports_the_whole_gateways_counts(tmp_path, fake_replicate):
    server, _ = fake_replicate
    labels = {"provider": "replicate", "endpoint": "proxy", "status": "200"}
    with GatewayProcess(tmp_path / "data", providers=[replicate_provider(server.url)],
                        env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}, workers=2) as gateway:
        headers = gateway.headers(**{"x-portkey-provider": "@replicate-test"})
        # A fresh connection each: the kernel spreads them over both workers (SO_REUSEPORT), for the
        # requests and for the scrapes alike (all 20 on one worker: a chance of one in half a million).
        assert {httpx.get(gateway.v1 + "/account", headers=headers).status_code for _ in range(20)} == {200}
        wait_for(gateway, "modelport_requests", "modelport_requests_total", 20, **labels)
        scrapes = [scrape(gateway) for _ in range(20)]
    assert [value(s, "modelport_requests", "modelport_requests_total", **labels) for s in scrapes] == [20] * 20
    assert len({sample.labels["pid"] for s in scrapes for sample in s["modelport_requests"].samples}) == 1
