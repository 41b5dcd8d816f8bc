"""AWS Bedrock through the gateway: the real openai and anthropic SDKs, a stored provider holding AWS
keys (or a role to assume), and a strict fake Bedrock that checks every SigV4 signature with botocore."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.conftest import BEDROCK_KEY_ID, BEDROCK_SECRET
from tests.fakes.bedrock import BEDROCK, make_bedrock_app
from tests.fakes.server import FakeServer
from tests.harness import GatewayProcess
from tests.test_logging import one_log, trace

KEY_ID = BEDROCK_KEY_ID
ROLE = "arn:aws:iam::123456789012:role/bedrock-caller"
CLAUDE, NOVA = "anthropic.claude-3-5-sonnet-20241022-v2:0", "us.amazon.nova-pro-v1:0"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


@pytest.fixture(scope="module")
def fake_bedrock():
    with FakeServer(make_bedrock_app(KEY_ID, BEDROCK_SECRET)) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_bedrock: FakeServer):
    def provider(slug: str, secret_env: str, **settings: str) -> dict:
        return {"slug": slug, "provider": "bedrock", "secret_env": secret_env, "custom_host": fake_bedrock.url,
                "settings": {"aws_access_key_id": KEY_ID, "aws_region": "us-east-1", **settings}}

    providers = [provider("aws", "TEST_AWS_SECRET"), provider("aws-wrong", "TEST_AWS_WRONG"),
                 provider("aws-role", "TEST_AWS_SECRET", aws_role_arn=ROLE, aws_external_id="ext-42",
                          aws_sts_endpoint=fake_bedrock.url)]
    env = {"TEST_AWS_SECRET": BEDROCK_SECRET, "TEST_AWS_WRONG": "wrong" + BEDROCK_SECRET[5:]}
    # The STS call goes to the fake on loopback: private hosts are allowed for it as for custom hosts.
    process = GatewayProcess(tmp_path_factory.mktemp("bedrock") / "data", providers=providers, env=env,
                             settings={"allow_private_hosts": True})
    with process:
        yield process


@pytest.fixture(autouse=True)
def fake(fake_bedrock: FakeServer):
    state = fake_bedrock.app[BEDROCK]
    state.reset()
    state.roles = {ROLE: "ext-42"}
    return state


def openai_client(gateway: GatewayProcess, slug: str = "@aws", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0,
                         default_headers={**gateway.headers(), "x-portkey-provider": slug, **headers})


def anthropic_client(gateway: GatewayProcess, slug: str = "@aws") -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=gateway.admin_key, base_url=gateway.url, max_retries=0,
                               default_headers={"x-portkey-provider": slug})


def test_openai_chat_is_signed_priced_and_logged(gateway, fake):
    trace_id = trace()
    reply = openai_client(gateway, **{"x-portkey-trace-id": trace_id}).chat.completions.create(
        model=CLAUDE, max_tokens=50, messages=[{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "hello over bedrock"}])
    assert reply.choices[0].message.content == "You said: hello over bedrock"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 5)
    sent = fake.requests[-1]
    assert sent.path == "/model/anthropic.claude-3-5-sonnet-20241022-v2:0/converse"
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert sent.body["system"] == [{"text": "Be brief."}]
    row = one_log(gateway, trace_id)
    assert (row["provider"], row["model"], row["input_tokens"], row["output_tokens"]) == ("bedrock", CLAUDE, 5, 5)
    assert row["cost_status"] == "priced" and row["cost_usd"] == pytest.approx((5 * 3 + 5 * 15) / 1e6)
    assert BEDROCK_SECRET not in json.dumps(row)


def test_openai_stream_with_usage(gateway, fake):
    trace_id = trace()
    chunks = list(openai_client(gateway, **{"x-portkey-trace-id": trace_id}).chat.completions.create(
        model=NOVA, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream this back"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream this back"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 8
    assert fake.requests[-1].path == "/model/us.amazon.nova-pro-v1:0/converse-stream"
    row = one_log(gateway, trace_id)
    assert (row["input_tokens"], row["output_tokens"]) == (3, 5)
    assert row["cost_status"] == "priced" and row["cost_usd"] == pytest.approx((3 * 0.8 + 5 * 3.2) / 1e6)


def test_openai_tools_round_trip(gateway, fake):
    sdk = openai_client(gateway)
    first = sdk.chat.completions.create(model=CLAUDE, tools=[WEATHER], tool_choice="required",
                                        messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "Paris"}
    second = sdk.chat.completions.create(model=CLAUDE, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"}, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert second.choices[0].message.content == f'Results: {call.id}=[{{"text":"sunny"}}]'
    streamed = sdk.chat.completions.create(model=CLAUDE, tools=[WEATHER], stream=True,
                                           messages=[{"role": "user", "content": "Weather?"}])
    pieces = [tc for c in streamed if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert pieces[0].function.name == "get_weather"
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"city": "Paris"}


def test_anthropic_messages_sync_stream_and_tools(gateway, fake):
    sdk = anthropic_client(gateway)
    message = sdk.messages.create(model=CLAUDE, max_tokens=100, system="Be brief.",
                                  messages=[{"role": "user", "content": "hi from anthropic"}])
    assert message.content[0].text == "You said: hi from anthropic" and message.stop_reason == "end_turn"
    assert fake.requests[-1].body["system"] == [{"text": "Be brief."}]
    with sdk.messages.stream(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "stream it"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "You said: stream it" and final.usage.output_tokens == 4
    tool = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER["function"]["parameters"]}
    used = sdk.messages.create(model=CLAUDE, max_tokens=100, tools=[tool], tool_choice={"type": "any"},
                               messages=[{"role": "user", "content": "Weather?"}])
    [block] = [b for b in used.content if b.type == "tool_use"]
    assert used.stop_reason == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}


def test_a_wrong_secret_gets_bedrocks_403_in_openai_shape(gateway, fake):
    with pytest.raises(openai.PermissionDeniedError) as refused:
        openai_client(gateway, "@aws-wrong").chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    error = refused.value.response.json()["error"]
    assert error["message"].startswith("The request signature we calculated does not match")
    assert refused.value.response.headers.get("x-portkey-gateway-exception") != "true"
    assert not fake.requests  # refused before Bedrock looked at it


def test_an_assumed_role_signs_with_its_session_keys(gateway, fake):
    sdk = openai_client(gateway, "@aws-role")
    for _ in range(2):
        reply = sdk.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "as a role"}])
        assert reply.choices[0].message.content == "You said: as a role"
    assert len(fake.sts_calls) == 1 and fake.sts_calls[0]["ExternalId"] == "ext-42"  # cached between requests
    signed_with = fake.requests[-1].headers["authorization"].split("Credential=")[1].split("/")[0]
    assert signed_with.startswith("ASIA") and fake.requests[-1].headers["x-amz-security-token"]


def test_caller_brought_keys_in_portkey_headers(gateway, fake, fake_bedrock):
    headers = {**gateway.headers(), "x-portkey-provider": "bedrock", "x-portkey-custom-host": fake_bedrock.url,
               "x-portkey-aws-access-key-id": KEY_ID, "x-portkey-aws-secret-access-key": BEDROCK_SECRET,
               "x-portkey-aws-region": "us-east-1"}
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": "my own keys"}]}
    response = httpx.post(gateway.v1 + "/chat/completions", headers=headers, json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "You said: my own keys"
    bad = httpx.post(gateway.v1 + "/chat/completions", json=body, timeout=10,
                     headers={**headers, "x-portkey-aws-region": "evil.example/#"})
    assert bad.status_code == 400 and "aws_region" in bad.json()["error"]["message"]


def test_the_proxy_route_signs_native_requests(gateway, fake):
    body = {"messages": [{"role": "user", "content": [{"text": "native converse"}]}], "inferenceConfig": {"maxTokens": 9}}
    response = httpx.post(gateway.v1 + "/model/amazon.nova-pro-v1%3A0/converse", json=body, timeout=10,
                          headers={**gateway.headers(), "x-portkey-provider": "@aws"})
    assert response.status_code == 200, response.text
    assert response.json()["output"]["message"]["content"] == [{"text": "You said: native converse"}]
    assert fake.requests[-1].path == "/model/amazon.nova-pro-v1%3A0/converse"  # byte for byte, signed as sent


def test_a_body_too_large_to_sign_is_refused_clearly(gateway, fake):
    body = b'{"messages":[{"role":"user","content":[{"text":"' + b"x" * (4 * 1024 * 1024 + 10) + b'"}]}]}'
    response = httpx.post(gateway.v1 + "/model/amazon.nova-pro-v1%3A0/converse", content=body, timeout=30,
                          headers={**gateway.headers(), "x-portkey-provider": "@aws", "content-type": "application/json"})
    assert response.status_code == 413 and "signed over their body" in response.json()["error"]["message"]
    assert not fake.requests


def test_the_responses_api_over_bedrock(gateway, fake):
    response = openai_client(gateway).responses.create(model=CLAUDE, instructions="Be brief.", input="respond please")
    assert response.output_text == "You said: respond please"
    assert fake.requests[-1].body["system"] == [{"text": "Be brief."}]


def test_keys_stored_through_the_control_plane_are_sealed_and_sign(gateway, fake, fake_bedrock):
    created = httpx.post(gateway.v1 + "/virtual-keys", headers=gateway.headers(), timeout=10, json={
        "name": "aws-api", "slug": "aws-api", "provider": "bedrock", "custom_host": fake_bedrock.url,
        "awsAccessKeyId": KEY_ID, "awsSecretAccessKey": BEDROCK_SECRET, "awsRegion": "us-east-1"})
    assert created.status_code in (200, 201), created.text
    shown = httpx.get(gateway.v1 + "/virtual-keys/aws-api", headers=gateway.headers(), timeout=10)
    assert shown.status_code == 200 and BEDROCK_SECRET not in shown.text and BEDROCK_SECRET[-6:] not in shown.text
    reply = openai_client(gateway, "@aws-api").chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "sealed keys"}])
    assert reply.choices[0].message.content == "You said: sealed keys"
