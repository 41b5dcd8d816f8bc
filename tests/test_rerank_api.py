"""Portkey's unified rerank (``POST /v1/rerank``, Cohere's shape) through the gateway: Cohere's v2 API
behind its adapter, priced per search unit in the log."""

from __future__ import annotations

import httpx
import pytest

from tests.test_logging import one_log, trace

DOCUMENTS = ["Paris is the capital of France.", "The capital of Brazil is Brasilia.", "Horses eat grass."]
QUERY = "what is the capital of France"


@pytest.fixture(autouse=True)
def clean_fake(fake_cohere):
    fake_cohere[1].reset()


def rerank(gateway, body: dict, provider: str = "@cohere-test", trace_id: str | None = None) -> httpx.Response:
    headers = gateway.headers(**{"x-portkey-provider": provider, **({"x-portkey-trace-id": trace_id} if trace_id else {})})
    return httpx.post(f"{gateway.v1}/rerank", json=body, headers=headers, timeout=20)


def test_rerank_goes_to_cohere_v2_and_is_priced_per_search_unit(gateway, fake_cohere):
    trace_id = trace()
    response = rerank(gateway, {"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 2}, trace_id=trace_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["index"] for r in body["results"]] == [0, 1]
    assert body["results"][0]["relevance_score"] > body["results"][1]["relevance_score"]
    assert "document" not in body["results"][0]
    assert body["meta"]["billed_units"] == {"search_units": 1}
    sent = fake_cohere[1].requests[-1]
    assert (sent.path, sent.body) == ("/v2/rerank", {"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 2})
    row = one_log(gateway, trace_id)
    assert (row["endpoint"], row["model"], row["cost_status"]) == ("rerank", "rerank-v3.5", "priced")
    assert row["cost_usd"] == pytest.approx(0.002)  # $2 per 1,000 search units


def test_return_documents_and_text_objects_are_answered_as_portkey_does(gateway, fake_cohere):
    documents = [{"text": text} for text in DOCUMENTS]
    response = rerank(gateway, {"model": "rerank-v3.5", "query": QUERY, "documents": documents, "return_documents": True})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["document"]["text"] for r in results] == [DOCUMENTS[r["index"]] for r in results]
    assert fake_cohere[1].requests[-1].body["documents"] == DOCUMENTS  # v2 takes strings


def test_many_documents_cost_more_search_units(gateway):
    trace_id = trace()
    response = rerank(gateway, {"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS * 50}, trace_id=trace_id)
    assert response.json()["meta"]["billed_units"] == {"search_units": 2}
    assert one_log(gateway, trace_id)["cost_usd"] == pytest.approx(0.004)


def test_a_cohere_refusal_keeps_its_status_and_is_not_the_gateways(gateway):
    response = rerank(gateway, {"model": "command-r-plus", "query": QUERY, "documents": DOCUMENTS})
    assert response.status_code == 404 and "rerank model" in response.json()["error"]["message"]
    assert "x-portkey-gateway-exception" not in response.headers


def test_a_document_cohere_cannot_rank_is_a_clear_400(gateway, fake_cohere):
    response = rerank(gateway, {"model": "rerank-v3.5", "query": QUERY, "documents": [{"title": "no text"}]})
    assert response.status_code == 400 and "'text' string" in response.json()["error"]["message"]
    assert response.headers["x-portkey-gateway-exception"] == "true"
    assert not fake_cohere[1].requests


def test_a_provider_without_rerank_is_a_clear_400(gateway):
    response = rerank(gateway, {"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS}, provider="@anthropic-test")
    assert response.status_code == 400
    assert "does not serve /v1/rerank through the unified API" in response.json()["error"]["message"]
    assert response.headers["x-portkey-gateway-exception"] == "true"
