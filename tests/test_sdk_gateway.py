"""The ModelPort SDK end to end: a real gateway process in front of the strict fake providers."""

from __future__ import annotations

import pytest

from modelport.client import (
    APIStatusError,
    AsyncModelPort,
    ModelPort,
    RateLimitError,
    Response,
    Stream,
)

TERMINAL = ("succeeded", "failed", "canceled")


@pytest.fixture
def replicate_client(gateway):
    with ModelPort(api_key=gateway.admin_key, provider="@replicate-test", base_url=gateway.v1, timeout=20) as client:
        yield client


def echo_version(client: ModelPort) -> str:
    return client.get("/models/test/echo")["latest_version"]["id"]


def test_prediction_is_created_and_polled_through_the_gateway(replicate_client, gateway):
    prediction = replicate_client.post("/predictions", version=echo_version(replicate_client), input={"text": "Ada"})
    assert isinstance(prediction, Response)
    assert prediction.status_code == 201
    assert prediction.trace_id
    assert prediction.urls.get.startswith(gateway.v1)
    polled = replicate_client.get(prediction.urls.get)
    while polled["status"] not in TERMINAL:
        polled = replicate_client.get(prediction.urls.get)
    assert polled["output"] == "Ada"


def test_replicate_stream_delivers_named_events(replicate_client):
    created = replicate_client.post("/models/test/llm/predictions", input={"prompt": "one two three"}, stream=True)
    stream = replicate_client.get(created.urls.stream, headers={"Accept": "text/event-stream"})
    assert isinstance(stream, Stream)
    events = list(stream)
    assert events[-1].event == "done"
    output = "".join(event.data for event in events if event.event == "output")
    assert output.split() == ["one", "two", "three"]


def test_a_json_array_body_comes_back(replicate_client):
    hardware = replicate_client.get("/hardware")
    assert {"sku": "cpu", "name": "CPU"} in hardware.json()


def test_upstream_rate_limit_on_post_is_not_retried(replicate_client, fake_replicate):
    _, replicate = fake_replicate
    version = echo_version(replicate_client)
    before = len(replicate.requests_to("/v1/predictions", method="POST"))
    replicate.fail_next(429, path="/v1/predictions", retry_after=0)
    with pytest.raises(RateLimitError) as caught:
        replicate_client.post("/predictions", version=version, input={"text": "once"})
    assert caught.value.gateway_exception is False
    assert len(replicate.requests_to("/v1/predictions", method="POST")) == before + 1


def test_gateway_refusal_is_a_typed_gateway_exception(gateway):
    import modelport

    with modelport.ModelPort(api_key="mp-not-a-key", provider="@replicate-test", base_url=gateway.v1) as client:
        with pytest.raises(modelport.AuthenticationError) as caught:  # importable from the package itself
            client.get("/account")
    assert isinstance(caught.value, APIStatusError) and caught.value.status_code == 401
    assert caught.value.gateway_exception is True
    assert caught.value.message


async def test_chat_completion_through_the_gateway(gateway):
    async with AsyncModelPort(api_key=gateway.admin_key, provider="@openai-test", base_url=gateway.v1) as client:
        messages = [{"role": "user", "content": "say hello there"}]
        completion = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        chunks = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        streamed = "".join([chunk.choices[0].delta.content or "" async for chunk in chunks if chunk.choices])
    assert completion.choices[0].message.content
    assert streamed == completion.choices[0].message.content


@pytest.mark.parametrize("provider", ["@openai-test", "@gemini-test"])
def test_a_response_through_the_gateway(gateway, provider):
    model = {"@openai-test": "gpt-4o-mini", "@gemini-test": "gemini-2.0-flash"}[provider]
    with ModelPort(api_key=gateway.admin_key, provider=provider, base_url=gateway.v1) as client:
        response = client.responses.create(model=model, input="say hello there")
        events = list(client.responses.create(model=model, input="say hello there", stream=True))
    text = response.output[0].content[0].text
    assert response.object == "response" and text.endswith("say hello there")  # each fake answers in its own words
    streamed = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert streamed == text and events[-1].type == "response.completed"


def test_every_sdk_error_class_is_exported_from_modelport():
    import inspect

    import modelport
    from modelport.client import _errors

    classes = {name for name, value in vars(_errors).items()
               if inspect.isclass(value) and issubclass(value, _errors.ModelPortError)}
    assert classes <= set(modelport.__all__)
    assert all(getattr(modelport, name) is getattr(_errors, name) for name in classes)
