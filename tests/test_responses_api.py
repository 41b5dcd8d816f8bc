"""OpenAI's Responses API (``/v1/responses``) on every chat provider: the real openai SDK, pointed at the
gateway, reaches OpenAI and Azure OpenAI natively and Anthropic, Gemini, Cohere and any OpenAI-compatible
provider translated, streaming, tools and structured output included."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from aiohttp import web
from pydantic import BaseModel

from modelport.providers.openai_shapes import usage_in_tail
from tests.conftest import OPENAI_KEY
from tests.fakes.openai import UpstreamState, json_body
from tests.fakes.openai_responses import create_response
from tests.fakes.server import FakeServer
from tests.test_logging import one_log, trace

MODELS = {"@anthropic-test": "claude-3-5-haiku-20241022", "@gemini-test": "gemini-2.0-flash",
          "@cohere-test": "command-r-plus"}
TRANSLATED = list(MODELS)
EVERY = ["@openai-test", *TRANSLATED]
MODELS["@openai-test"] = "gpt-4o-mini"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
               "response.output_text.delta", "response.output_text.done", "response.content_part.done",
               "response.output_item.done", "response.completed"]


def client(gateway, provider: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=gateway.admin_key, base_url=gateway.v1, max_retries=0,
                         default_headers={"x-portkey-provider": provider, **headers})


@pytest.fixture(autouse=True)
def clean_fakes(fake_openai, fake_anthropic, fake_gemini, fake_cohere):
    for _, state in (fake_openai, fake_anthropic, fake_gemini, fake_cohere):
        state.reset()


@pytest.mark.parametrize("provider", EVERY)
def test_a_response_from_any_chat_provider_is_logged_with_its_usage_and_cost(gateway, provider):
    trace_id = trace()
    response = client(gateway, provider, **{"x-portkey-trace-id": trace_id}).responses.create(
        model=MODELS[provider], instructions="Be brief.", input="hello there", max_output_tokens=100)
    assert response.object == "response" and response.id.startswith("resp_") and response.status == "completed"
    assert response.output[0].type == "message" and response.output[0].content[0].type == "output_text"
    assert "hello there" in response.output_text
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0 and usage.total_tokens == usage.input_tokens + usage.output_tokens
    row = one_log(gateway, trace_id)
    assert row["endpoint"] == "responses" and row["model"] == MODELS[provider]
    assert (row["input_tokens"], row["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert row["cost_status"] == "priced" and row["cost_usd"] > 0


def test_openai_gets_the_request_byte_for_byte_and_keeps_its_state(gateway, fake_openai):
    _, state = fake_openai
    raw = json.dumps({"model": "gpt-4o-mini", "input": "remember the word plum", "metadata": {"k": "v"},
                      "reasoning": None, "text": {"format": {"type": "text"}}}, indent=1).encode()
    sent = httpx.post(gateway.v1 + "/responses", content=raw,
                      headers=gateway.headers(**{"x-portkey-provider": "@openai-test", "content-type": "application/json"}))
    assert sent.status_code == 200 and sent.json()["store"] is True and sent.json()["metadata"] == {"k": "v"}
    assert state.last.path == "/v1/responses" and state.last.body == json.loads(raw)
    sdk = client(gateway, "@openai-test")
    first = sent.json()["id"]
    follow = sdk.responses.create(model="gpt-4o-mini", previous_response_id=first, input="what was it?")
    assert follow.previous_response_id == first and follow.output_text == "Echo: what was it?"
    assert sdk.responses.retrieve(first).id == first  # the proxy route reaches OpenAI's own store
    sdk.responses.delete(first)
    with pytest.raises(openai.NotFoundError, match=f"Response with id '{first}' not found"):
        sdk.responses.retrieve(first)


@pytest.mark.parametrize("provider", EVERY)
def test_streamed_events_in_the_responses_sequence(gateway, provider):
    trace_id = trace()
    stream = client(gateway, provider, **{"x-portkey-trace-id": trace_id}).responses.create(
        model=MODELS[provider], input="streamed words here", stream=True)
    events = list(stream)
    kinds = [event.type for event in events]
    assert [kind for i, kind in enumerate(kinds) if i == 0 or kind != kinds[i - 1]] == TEXT_EVENTS
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    final = events[-1].response
    assert "streamed words here" in text and final.output_text == text and final.status == "completed"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    row = one_log(gateway, trace_id)
    assert row["stream"] and (row["input_tokens"], row["output_tokens"]) == (final.usage.input_tokens, final.usage.output_tokens)
    assert row["cost_status"] == "priced" and row["cost_usd"] > 0


@pytest.mark.parametrize("provider", TRANSLATED)
def test_the_sdk_stream_helper_assembles_a_translated_stream(gateway, provider):
    with client(gateway, provider).responses.stream(model=MODELS[provider], input="assembled words") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and "assembled words" in final.output_text


@pytest.mark.parametrize("provider", EVERY)
@pytest.mark.parametrize("streamed", [False, True])
def test_function_call_round_trip(gateway, provider, streamed):
    sdk = client(gateway, provider)
    asked = [{"role": "user", "content": "use get_weather for Paris"}]
    if streamed:
        events = list(sdk.responses.create(model=MODELS[provider], tools=[WEATHER], input=asked, stream=True))
        kinds = [event.type for event in events]
        assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
        first = events[-1].response
    else:
        first = sdk.responses.create(model=MODELS[provider], tools=[WEATHER], input=asked)
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.call_id and "city" in json.loads(call.arguments)
    follow = asked + [item.model_dump(exclude_none=True) for item in first.output] + [
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    second = sdk.responses.create(model=MODELS[provider], tools=[WEATHER], input=follow)
    assert "sunny" in second.output_text and second.status == "completed"


class City(BaseModel):
    city: str


# Anthropic has no JSON switch: its chat adapter asks for the schema in the system prompt (anthropic.py),
# which its fake does not read, so the schema is not enforced there by anything the gateway could test.
@pytest.mark.parametrize("provider", ["@openai-test", "@gemini-test", "@cohere-test"])
def test_structured_output_parses_into_the_schema(gateway, provider):
    parsed = client(gateway, provider).responses.parse(model=MODELS[provider], input="a city as JSON", text_format=City)
    assert isinstance(parsed.output_parsed, City) and parsed.output_parsed.city


def compatible_client(open_gateway, fake_openai, **headers: str) -> openai.OpenAI:
    """An OpenAI-compatible table entry (Groq) on the fake OpenAI: Responses reach its chat API."""
    return openai.OpenAI(api_key=OPENAI_KEY, base_url=open_gateway.v1, max_retries=0, default_headers={
        "x-portkey-provider": "groq", "x-portkey-custom-host": fake_openai[0].url + "/v1", **headers})


@pytest.fixture
def compatible(open_gateway, fake_openai):
    return compatible_client(open_gateway, fake_openai), fake_openai[1]


def test_an_openai_compatible_provider_gets_the_request_as_chat(compatible):
    sdk, state = compatible
    response = sdk.responses.create(
        model="gpt-4o-mini", instructions="Be brief.", max_output_tokens=50, temperature=0.2, top_p=0.9, user="u-7",
        metadata={"team": "search"}, text={"format": {"type": "json_object"}},
        input=[{"role": "developer", "content": "Answer in json."},
               {"role": "user", "content": [{"type": "input_text", "text": "what is this"},
                                            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}])
    sent = state.last.body
    assert state.last.path == "/v1/chat/completions"
    assert sent["messages"][:2] == [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Answer in json."}]
    assert sent["messages"][2]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["user"]) == (50, 0.2, 0.9, "u-7")
    assert sent["response_format"] == {"type": "json_object"} and "metadata" not in sent
    assert json.loads(response.output_text)["echo"] and response.metadata == {"team": "search"}
    assert response.store is True  # kept by the gateway for previous_response_id (tests/test_stored_responses.py)


def test_a_forced_function_and_a_json_schema_reach_chat_in_its_shape(compatible):
    sdk, state = compatible
    sdk.responses.create(model="gpt-4o-mini", input="hi", tools=[WEATHER],
                         tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False)
    assert state.last.body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert state.last.body["tools"][0]["function"]["parameters"] == WEATHER["parameters"]
    assert state.last.body["parallel_tool_calls"] is False
    schema = City.model_json_schema()
    sdk.responses.create(model="gpt-4o-mini", input="a city",
                         text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    assert state.last.body["response_format"] == {"type": "json_schema",
                                                  "json_schema": {"name": "city", "schema": schema, "strict": True}}


def test_a_cut_short_answer_is_incomplete(compatible):
    response = compatible[0].responses.create(model="gpt-4o-mini", input="one two three four five six", max_output_tokens=3)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("stateful", [{"conversation": "conv_1"}, {"prompt": {"id": "pmpt_1"}},
                                      {"input": [{"type": "item_reference", "id": "msg_1"}]}])
def test_every_reference_to_stored_state_is_refused_even_when_lenient(gateway, stateful):
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway, "@gemini-test").responses.create(**{"model": "gemini-2.0-flash", "input": "hi", **stateful})
    assert "stored at OpenAI" in refused.value.body["message"] and "'input'" in refused.value.body["message"]


def test_reasoning_items_files_and_part_lists_reach_chat_in_its_shape(open_gateway, fake_openai):
    sdk, state = compatible_client(open_gateway, fake_openai), fake_openai[1]
    history = [{"role": "user", "content": "use get_weather for Paris"},
               {"type": "reasoning", "id": "rs_1", "summary": []},
               {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
               {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "sunny"}]}]
    answer = sdk.responses.create(model="gpt-4o-mini", tools=[WEATHER], input=history)
    assert answer.output_text == "Tool said: sunny"
    assert state.last.body["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    strict = compatible_client(open_gateway, fake_openai, **{"x-portkey-strict-open-ai-compliance": "true"})
    with pytest.raises(openai.BadRequestError, match=r"Parameter 'input\[1\] \(reasoning item\)' is not supported"):
        strict.responses.create(model="gpt-4o-mini", tools=[WEATHER], input=history)
    pdf = "data:application/pdf;base64,JVBERi0="
    sdk.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "summarise"}, {"type": "input_file", "filename": "a.pdf", "file_data": pdf}]}])
    assert state.last.body["messages"][0]["content"][1] == {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}}
    with pytest.raises(openai.BadRequestError, match="input_file needs inline 'file_data'"):
        sdk.responses.create(model="gpt-4o-mini",
                             input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}])


def test_features_without_a_counterpart_are_dropped_or_refused_by_name(gateway, fake_anthropic):
    _, state = fake_anthropic
    ask = {"model": MODELS["@anthropic-test"], "input": "hello there", "store": True,
           "tools": [WEATHER, {"type": "web_search"}]}
    lenient = client(gateway, "@anthropic-test").responses.create(**ask)
    assert "hello there" in lenient.output_text and [t["name"] for t in state.last.body["tools"]] == ["get_weather"]
    strict = client(gateway, "@anthropic-test", **{"x-portkey-strict-open-ai-compliance": "true"})
    # "store": true is honoured (the gateway keeps the answer), so strict compliance passes it and names the tool.
    with pytest.raises(openai.BadRequestError, match=r"Parameter 'tools\[1\] \(web_search\)' is not supported"):
        strict.responses.create(**ask)
    with pytest.raises(openai.BadRequestError, match=r"Parameter 'tools\[\]\.strict' is not supported by provider 'anthropic'"):
        strict.responses.create(**{**ask, "tools": [{**WEATHER, "strict": True}]})


def test_provider_errors_come_back_in_openais_shape_with_the_providers_status(gateway, fake_gemini):
    fake_gemini[1].fail_next(503, "The model is overloaded.", "UNAVAILABLE")
    with pytest.raises(openai.InternalServerError) as failed:
        client(gateway, "@gemini-test").responses.create(model="gemini-2.0-flash", input="hi")
    assert failed.value.status_code == 503 and "The model is overloaded." in failed.value.body["message"]
    assert "x-portkey-gateway-exception" not in failed.value.response.headers


def test_an_error_inside_a_stream_ends_it_as_a_failed_response(gateway, fake_gemini):
    fake_gemini[1].stream_error_after = 1
    events = list(client(gateway, "@gemini-test").responses.create(
        model="gemini-2.0-flash", input="many words here to stream", stream=True))
    kinds = [event.type for event in events]
    assert "response.output_text.delta" in kinds and kinds[-1] == "response.failed"
    assert events[-1].response.status == "failed" and events[-1].response.error.message


def test_a_malformed_input_is_a_clear_gateway_400(gateway):
    # Replicate, whose chat runs in steps, serves Responses too: tests/test_replicate_responses.py.
    with pytest.raises(openai.BadRequestError, match="'input' must be a string or a non-empty list") as raised:
        client(gateway, "@cohere-test").responses.create(model="command-r-plus", input=[])
    assert raised.value.response.headers["x-portkey-gateway-exception"] == "true"


def test_the_model_names_the_stored_provider_with_no_portkey_header(gateway, fake_gemini):
    sdk = openai.OpenAI(api_key=gateway.admin_key, base_url=gateway.v1, max_retries=0)
    response = sdk.responses.create(model="@gemini-test/gemini-2.0-flash", input="hello there")
    assert "hello there" in response.output_text and "gemini-2.0-flash" in fake_gemini[1].requests[-1].path


@pytest.fixture(scope="module")
def fake_azure():
    """Azure OpenAI's v1 API: OpenAI's Responses body at /openai/v1/responses, an ``api-key``, the
    deployment in ``model``."""
    state, seen, stored = UpstreamState(), [], {}

    async def v1_responses(request: web.Request) -> web.StreamResponse:
        seen.append((dict(request.query), await json_body(request)))
        if request.headers.get("api-key") != "azure-key" or "authorization" in request.headers:
            denied = {"error": {"code": "401", "message": "Access denied due to invalid subscription key."}}
            return web.json_response(denied, status=401)
        return await create_response(request, state, stored)

    app = web.Application()
    app.router.add_post("/openai/v1/responses", v1_responses)
    with FakeServer(app) as server:
        yield server, seen


def test_azure_openai_serves_responses_on_its_v1_api(open_gateway, fake_azure):
    server, seen = fake_azure
    sdk = openai.OpenAI(api_key="azure-key", base_url=open_gateway.v1, max_retries=0, default_headers={
        "x-portkey-provider": "azure-openai", "x-portkey-custom-host": server.url + "/openai"})
    response = sdk.responses.create(model="gpt-4o-mini", input="hello there")
    assert response.output_text == "Echo: hello there" and response.usage.input_tokens > 0
    events = list(sdk.responses.create(model="gpt-4o-mini", input="streamed", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Echo: streamed"
    query, body = seen[-1]
    assert query == {} and body["model"] == "gpt-4o-mini" and body["stream"] is True


def test_a_200_the_gateway_cannot_translate_is_a_clear_502(open_gateway):
    async def broken_chat(request: web.Request) -> web.Response:
        return web.Response(text="<html>upgrade in progress</html>", content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", broken_chat)
    with FakeServer(app) as server:
        response = httpx.post(open_gateway.v1 + "/responses", json={"model": "m", "input": "hi"}, headers={
            "authorization": "Bearer k", "x-portkey-provider": "groq", "x-portkey-custom-host": server.url + "/v1"})
    assert response.status_code == 502 and response.headers["x-portkey-gateway-exception"] == "true"
    assert response.json()["error"]["code"] == "untranslatable_response"
    assert "not in its API's format" in response.json()["error"]["message"]


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_a_stream_longer_than_the_log_keeps_is_priced_from_its_end(gateway, api):
    """The log keeps a body's first 64 KB; a stream relayed as it came (OpenAI's Responses, and chat on an
    OpenAI-compatible provider alike) reports its usage at the end, which the gateway keeps aside."""
    trace_id = trace()
    sdk = client(gateway, "@openai-test", **{"x-portkey-trace-id": trace_id})
    prompt = "word " * 3000  # echoed: ~700 KB of events
    if api == "responses":
        usage = list(sdk.responses.create(model="gpt-4o-mini", input=prompt, stream=True))[-1].response.usage
        tokens = (usage.input_tokens, usage.output_tokens)
    else:
        usage = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}],
                                                 stream=True, stream_options={"include_usage": True}))[-1].usage
        tokens = (usage.prompt_tokens, usage.completion_tokens)
    row = one_log(gateway, trace_id)
    assert row["response_bytes"] > 500_000 and tokens[1] > 3000
    assert (row["input_tokens"], row["output_tokens"]) == tokens and row["cost_status"] == "priced"


def test_the_usage_at_a_streams_end_is_the_last_usage_object():
    completed = {"type": "response.completed", "response": {
        "output": [{"type": "message", "content": [{"type": "output_text", "text": 'a "usage": {} inside text'}]}],
        "usage": {"input_tokens": 5, "output_tokens": 2}, "user": None, "metadata": {"usage": "a key of the caller's"}}}
    tail = b'ge": {"input_tokens": 1}}\n\nevent: response.completed\ndata: ' + json.dumps(completed).encode() + b"\n\n"
    assert usage_in_tail(tail) == {"input_tokens": 5, "output_tokens": 2}
    assert usage_in_tail(b'data: {"choices": [], "usage": null}\n\ndata: [DONE]\n\n') is None


@pytest.mark.parametrize("body", [
    {"input": {"role": "user"}}, {"input": "hi", "tools": 5}, {"input": [5, "x"]}, {"input": "hi", "text": {"format": 5}},
    {"input": [{"role": "tool", "content": "x"}]}, {"input": [{"role": "user", "content": 5}]},
    {"input": "hi", "instructions": ["not", "a", "string"]}, {"input": [{"type": "function_call", "name": "f"}]},
])
def test_a_malformed_body_is_a_400_that_names_the_field(gateway, body):
    response = httpx.post(gateway.v1 + "/responses", json={"model": MODELS["@anthropic-test"], **body},
                          headers=gateway.headers(**{"x-portkey-provider": "@anthropic-test"}))
    assert response.status_code == 400 and response.headers["x-portkey-gateway-exception"] == "true"
    error = response.json()["error"]
    assert error["code"] == "untranslatable_request"
    assert any(field in error["message"] for field in ("input", "tools", "text", "instructions"))
    assert "Traceback" not in gateway.log_text()
