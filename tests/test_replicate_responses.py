"""OpenAI's Responses API over Replicate models: the real openai SDK against the gateway and the fake
Replicate. The Responses request becomes a chat call of the multi-step adapter (a prediction), its answer
a ``response`` object or the Responses event stream; cost is the prediction's, logged once."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.test_logging import one_log, trace
from tests.test_replicate_chat import A40_LARGE, PER_MILLION_IN, PER_MILLION_OUT, chat_client
from tests.test_replicate_cost import start_gateway
from tests.test_responses_api import TEXT_EVENTS, WEATHER

SLUG = {"x-portkey-provider": "@replicate-test"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_replicate, fake_openai):
    prices = {"official": {"test/llm": {"input": PER_MILLION_IN, "output": PER_MILLION_OUT}},
              "models": {"test/chat": "gpu-a40-large"}}
    process = start_gateway(tmp_path_factory.mktemp("replicate-responses"), fake_replicate, fake_openai, prices)
    yield process
    process.stop()


@pytest.fixture
def client(gateway):
    return chat_client(gateway)


def test_a_response_runs_one_prediction_and_its_cost_is_logged_once(gateway, client, fake_replicate):
    _, state = fake_replicate
    trace_id = trace()
    response = client.responses.create(model="test/llm", instructions="Be brief.", input="hello there world",
                                       max_output_tokens=20, extra_headers={"x-portkey-trace-id": trace_id})
    assert response.object == "response" and response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == "hello there world" and response.store is True
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (5, 3, 8)  # the system prompt counts
    prediction = state.predictions[-1]
    assert prediction.model == "test/llm"
    assert prediction.input == {"prompt": "hello there world", "system_prompt": "Be brief.", "max_new_tokens": 20}
    row = one_log(gateway, trace_id)
    expected = (5 * PER_MILLION_IN + 3 * PER_MILLION_OUT) / 1e6
    assert row["endpoint"] == "responses" and row["prediction_id"] == prediction.id
    assert row["cost_usd"] == pytest.approx(expected) and row["cost_status"] == "priced"
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(**SLUG), timeout=20) as admin:
        view = admin.get(f"/logs/predictions/{prediction.id}").json()
    assert view["cost_usd"] == pytest.approx(expected) and view["first_log_id"] == row["id"] == view["ended_on_log_id"]
    assert [step["step"] for step in view["lifecycle"]] == ["responses"]


def test_a_streamed_response_relays_the_predictions_output_as_text_deltas(gateway, client, fake_replicate):
    _, state = fake_replicate
    trace_id = trace()
    events = list(client.responses.create(model="test/chat", input="a b c", stream=True,
                                          extra_headers={"x-portkey-trace-id": trace_id}))
    kinds = [event.type for event in events]
    assert [k for i, k in enumerate(kinds) if k != "response.output_text.delta" or kinds[i - 1] != k] == TEXT_EVENTS
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["a", " b", " c"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.output_text == "a b c" and completed.usage.output_tokens == 3
    row = one_log(gateway, trace_id)
    assert row["endpoint"] == "responses" and row["stream"] is True and row["prediction_id"] == state.predictions[-1].id
    assert row["cost_usd"] == pytest.approx(2.0 * A40_LARGE)  # test/chat runs 2 s and row["cost_status"] == "priced"


@pytest.mark.parametrize("asked, named", [
    ({"tools": [WEATHER]}, "'tools'"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}}, "'text.format'"),
    ({"conversation": "conv_123"}, "'conversation'"),  # previous_response_id: continued from the gateway's store
])
def test_what_a_replicate_model_cannot_honour_is_a_400_before_any_prediction(client, fake_replicate, asked, named):
    _, state = fake_replicate
    before = len(state.predictions)
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="test/llm", input="x", **asked)
    assert named in raised.value.message and len(state.predictions) == before


def test_a_failed_prediction_is_a_502_with_replicates_error(client, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/llm", outcome="failed", error="no GPU left")
    with pytest.raises(openai.APIStatusError) as raised:
        client.responses.create(model="test/llm", input="x")
    assert raised.value.status_code == 502 and "no GPU left" in raised.value.message


def test_a_prediction_failing_mid_stream_ends_the_stream_with_response_failed(client, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/llm", outcome="failed", error="the GPU fell over")
    events = list(client.responses.create(model="test/llm", input="a b c d", stream=True))
    assert [e.delta for e in events if e.type == "response.output_text.delta"][:2] == ["a", " b"]
    assert events[-1].type == "response.failed" and "the GPU fell over" in events[-1].response.error.message


def test_a_streamed_replicate_turn_is_stored_and_continued(gateway, client, fake_replicate):
    _, state = fake_replicate
    events = list(client.responses.create(model="test/chat", input="a b c", stream=True))
    final = events[-1].response
    assert events[-1].type == "response.completed" and final.store is True
    follow = client.responses.create(model="test/llm", input="and d", previous_response_id=final.id)
    assert follow.previous_response_id == final.id
    assert state.predictions[-1].input["prompt"] == f"User: a b c\n\nAssistant: {final.output_text}\n\nUser: and d\n\nAssistant:"
    assert client.responses.retrieve(final.id).output_text == final.output_text
