"""The gateway's own store of Responses conversations (gateway/stored_responses.py): the real openai SDK
continues a conversation with ``previous_response_id`` on a provider without a Responses API (Anthropic,
Gemini, Replicate over the fakes), retrieves, lists and deletes what it stored, and one key never
reaches another's. The store contract itself (both databases) is in tests/test_store.py."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing, contextmanager

import httpx
import openai
import pytest

from tests.test_logging import one_log, trace
from tests.test_responses_api import MODELS, WEATHER, client

CLAUDE = MODELS["@anthropic-test"]


@pytest.fixture(autouse=True)
def clean_fakes(fake_anthropic, fake_gemini):
    for _, state in (fake_anthropic, fake_gemini):
        state.reset()


def other_key(gateway, name: str = "other-tenant", **fields) -> openai.OpenAI:
    """A fresh inference-only key, as an SDK client on the Anthropic provider."""
    answer = httpx.post(gateway.v1 + "/api-keys", headers=gateway.headers(),
                        json={"name": name, "scopes": ["inference"], **fields})
    assert answer.status_code == 200, answer.text
    return openai.OpenAI(api_key=answer.json()["key"], base_url=gateway.v1, max_retries=0,
                         default_headers={"x-portkey-provider": "@anthropic-test"})


def texts(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(block.get("text", "") for block in content)


def test_three_turns_reach_the_provider_with_every_earlier_turn(gateway, fake_anthropic):
    sdk, state = client(gateway, "@anthropic-test"), fake_anthropic[1]
    first = sdk.responses.create(model=CLAUDE, instructions="Be brief.", input="my name is Ada")
    assert first.store is True and first.previous_response_id is None
    second = sdk.responses.create(model=CLAUDE, instructions="Answer in French.", input="what is my name?",
                                  previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.store is True
    third = sdk.responses.create(model=CLAUDE, input="and again?", previous_response_id=second.id)
    sent = state.last.body
    assert [(m["role"], texts(m)) for m in sent["messages"]] == [
        ("user", "my name is Ada"), ("assistant", "Echo: my name is Ada"),
        ("user", "what is my name?"), ("assistant", "Echo: what is my name?"), ("user", "and again?")]
    assert "system" not in sent  # an earlier turn's instructions are not carried over (OpenAI's rule)
    assert third.output_text == "Echo: and again?"


def test_a_streamed_turn_is_continued_by_a_plain_one(gateway, fake_gemini):
    sdk, state = client(gateway, "@gemini-test"), fake_gemini[1]
    events = list(sdk.responses.create(model=MODELS["@gemini-test"], input="stream this please", stream=True))
    final = events[-1].response
    assert events[-1].type == "response.completed" and final.store is True
    follow = sdk.responses.create(model=MODELS["@gemini-test"], input="and now?", previous_response_id=final.id)
    contents = state.requests[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert final.output_text in json.dumps(contents) and follow.previous_response_id == final.id


def test_a_function_call_and_its_output_cross_turns(gateway, fake_anthropic):
    sdk, state = client(gateway, "@anthropic-test"), fake_anthropic[1]
    asked = sdk.responses.create(model=CLAUDE, tools=[WEATHER], input="use get_weather for Paris")
    call = next(item for item in asked.output if item.type == "function_call")
    answered = sdk.responses.create(model=CLAUDE, tools=[WEATHER], previous_response_id=asked.id,
                                    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert "sunny" in answered.output_text
    tool_use, tool_result = state.last.body["messages"][1]["content"][-1], state.last.body["messages"][2]["content"][0]
    assert tool_use["type"] == "tool_use" and tool_use["id"] == call.call_id and tool_use["name"] == "get_weather"
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == call.call_id


def test_store_false_is_not_kept_and_cannot_be_continued(gateway):
    sdk = client(gateway, "@anthropic-test")
    unkept = sdk.responses.create(model=CLAUDE, input="forget me", store=False)
    assert unkept.store is False
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model=CLAUDE, input="and then?", previous_response_id=unkept.id)
    assert refused.value.status_code == 400
    assert refused.value.body == {"message": f"Previous response with id '{unkept.id}' not found.",
                                  "type": "invalid_request_error", "param": "previous_response_id",
                                  "code": "previous_response_not_found"}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unkept.id)


def test_another_keys_response_is_unknown_to_it_and_an_admin_reads_any(gateway):
    mine, theirs = other_key(gateway, "owner"), other_key(gateway, "stranger")
    kept = mine.responses.create(model=CLAUDE, input="private words")
    with pytest.raises(openai.BadRequestError) as refused:
        theirs.responses.create(model=CLAUDE, input="what did they say?", previous_response_id=kept.id)
    assert refused.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError, match=f"Response with id '{kept.id}' not found"):
        theirs.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(kept.id)
    assert mine.responses.retrieve(kept.id).output_text == "Echo: private words"
    assert client(gateway, "@anthropic-test").responses.retrieve(kept.id).id == kept.id  # the admin key


def test_a_key_whose_bodies_are_not_kept_has_nothing_stored(gateway):
    private = other_key(gateway, "no-bodies", log_bodies=False)
    answer = private.responses.create(model=CLAUDE, input="keep nothing of mine")
    assert answer.store is False
    with pytest.raises(openai.BadRequestError) as refused:
        private.responses.create(model=CLAUDE, input="and then?", previous_response_id=answer.id)
    assert refused.value.code == "previous_response_not_found"


def test_retrieve_list_input_items_and_delete(gateway):
    sdk = client(gateway, "@anthropic-test")
    first = sdk.responses.create(model=CLAUDE, input="one")
    second = sdk.responses.create(model=CLAUDE, input=[{"role": "user", "content": "two"}], previous_response_id=first.id)
    got = sdk.responses.retrieve(second.id)
    assert got.model_dump() == second.model_dump()
    items = sdk.responses.input_items.list(second.id)  # newest first, as OpenAI lists them
    assert [(item.type, item.role, item.content[0].text) for item in items.data] == [
        ("message", "user", "two"), ("message", "assistant", "Echo: one"), ("message", "user", "one")]
    assert all(item.id for item in items.data) and items.has_more is False
    page = sdk.responses.input_items.list(second.id, order="asc", limit=2)
    assert [item.content[0].text for item in page.data] == ["one", "Echo: one"] and page.has_more
    rest = sdk.responses.input_items.list(second.id, order="asc", after=page.last_id)
    assert [item.content[0].text for item in rest.data] == ["two"] and rest.has_more is False
    bad = httpx.get(f"{gateway.v1}/responses/{second.id}/input_items?limit=500",
                    headers=gateway.headers(**{"x-portkey-provider": "@anthropic-test"}))
    assert bad.status_code == 400 and "'limit' must be a whole number from 1 to 100" in bad.json()["error"]["message"]
    deleted = httpx.delete(f"{gateway.v1}/responses/{second.id}", headers=gateway.headers(**{"x-portkey-provider": "@anthropic-test"}))
    assert deleted.json() == {"id": second.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(second.id)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model=CLAUDE, input="three", previous_response_id=second.id)
    assert refused.value.code == "previous_response_not_found"
    assert sdk.responses.retrieve(first.id).id == first.id  # deleting one turn leaves the earlier ones


def test_a_continued_turn_is_logged_as_one_request(gateway):
    sdk = client(gateway, "@anthropic-test")
    first = sdk.responses.create(model=CLAUDE, input="count me")
    trace_id = trace()
    sdk.responses.create(model=CLAUDE, input="once", previous_response_id=first.id,
                         extra_headers={"x-portkey-trace-id": trace_id})
    row = one_log(gateway, trace_id)
    assert row["status"] == 200 and row["endpoint"] == "responses" and row["error"] is None


@contextmanager
def responses_table_gone(gateway):
    """The store failing under the running gateway: its table renamed away for a while."""
    with closing(sqlite3.connect(gateway.data_dir / "modelport.db", isolation_level=None)) as db:
        db.execute("ALTER TABLE stored_responses RENAME TO stored_responses_away")
        try:
            yield
        finally:
            db.execute("ALTER TABLE stored_responses_away RENAME TO stored_responses")


def test_an_answer_the_store_cannot_keep_still_reaches_the_client(gateway):
    sdk = client(gateway, "@anthropic-test")
    trace_id = trace()
    with responses_table_gone(gateway):
        plain = sdk.responses.create(model=CLAUDE, input="not kept")
        events = list(sdk.responses.create(model=CLAUDE, input="not kept either", stream=True,
                                           extra_headers={"x-portkey-trace-id": trace_id}))
    assert plain.output_text == "Echo: not kept" and plain.store is False  # the body says what happened
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Echo: not kept either"
    assert one_log(gateway, trace_id)["error"] == "the response could not be stored for previous_response_id"
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model=CLAUDE, input="and then?", previous_response_id=plain.id)
