"""Vertex AI through the gateway: the real openai and anthropic SDKs reach Gemini and Claude models on
Vertex, with access tokens the gateway mints from a service-account key against a fake Google that
verifies the JWT grant and accepts only the live tokens it issued."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.server import FakeServer
from tests.fakes.vertex import VERTEX, Issued, VertexState, make_vertex_app, new_service_account
from tests.harness import GatewayProcess
from tests.test_logging import one_log, trace

GEMINI, CLAUDE = "gemini-2.5-flash", "claude-sonnet-4@20250514"
MODELS = [GEMINI, CLAUDE]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# One service account per stored provider, so that each test sees its own account's token cache.
ACCOUNTS = ("main", "cold", "short", "unknown", "sealed")  # "sealed" is stored through the control plane only


@pytest.fixture(scope="module")
def google():
    with FakeServer(make_vertex_app()) as running:
        yield running


@pytest.fixture(scope="module")
def keys(google) -> dict[str, dict[str, Any]]:
    made = {}
    for name in ACCOUNTS:
        info, public = new_service_account(google.url + "/token", email=f"{name}@test-project.iam.gserviceaccount.com")
        if name != "unknown":  # a key Google never issued
            google.app[VERTEX].register(info, public)
        made[name] = info
    return made


def vertex_provider(slug: str, google: FakeServer, key: dict[str, Any], **settings: str) -> dict[str, Any]:
    return {"slug": slug, "provider": "vertex-ai", "custom_host": google.url + "/v1",
            "settings": {"vertex_region": "us-central1", "vertex_service_account_json": json.dumps(key), **settings}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, google, keys):
    # The token endpoint and the API are one fake on loopback: the auth's calls go through the SSRF-guarded
    # transport, which takes a private address only when the operator allows it.
    providers = [vertex_provider(f"vertex-{name}", google, key, vertex_project_id="test-project")
                 for name, key in keys.items() if name != "sealed"]
    providers.append(vertex_provider("vertex-from-key", google, keys["main"]))  # project from the key's project_id
    process = GatewayProcess(tmp_path_factory.mktemp("vertex") / "data", providers=providers,
                             settings={"allow_private_hosts": True})
    with process:
        yield process


@pytest.fixture
def fake(google) -> VertexState:
    state = google.app[VERTEX]
    state.reset()
    return state


def chat_client(gateway: GatewayProcess, provider: str = "@vertex-main", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0,
                         default_headers={"x-portkey-api-key": gateway.admin_key, "x-portkey-provider": provider, **headers})


def messages_client(gateway: GatewayProcess, provider: str = "@vertex-main") -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=gateway.admin_key, base_url=gateway.url, max_retries=0,
                               default_headers={"x-portkey-provider": provider})


def ask(text: str = "hello there") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", MODELS)
def test_chat_reaches_the_model_in_its_publishers_format(gateway, fake, model):
    trace_id = trace()
    completion = chat_client(gateway, **{"x-portkey-trace-id": trace_id}).chat.completions.create(
        model=model, messages=[{"role": "system", "content": "Be brief."}, *ask()], max_tokens=50)
    assert "hello there" in completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    sent = fake.requests[-1]
    assert sent["headers"]["authorization"].startswith("Bearer ya29.fake-")
    if model == CLAUDE:
        assert sent["path"] == f"/v1/projects/test-project/locations/us-central1/publishers/anthropic/models/{CLAUDE}:rawPredict"
        assert sent["body"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent["body"]
    else:
        assert sent["path"] == f"/v1/projects/test-project/locations/us-central1/publishers/google/models/{GEMINI}:generateContent"
        assert sent["body"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    row = one_log(gateway, trace_id)
    assert row["provider"] == "vertex-ai" and row["model"] == model
    assert (row["input_tokens"], row["output_tokens"]) == (completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert row["cost_status"] == "priced" and row["cost_usd"] > 0


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_ends_with_its_usage(gateway, fake, model):
    chunks = list(chat_client(gateway).chat.completions.create(
        model=model, messages=ask("streamed words here"), stream=True, stream_options={"include_usage": True}))
    assert "streamed words here" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    method = "streamRawPredict" if model == CLAUDE else "streamGenerateContent"
    assert fake.requests[-1]["path"].endswith(f":{method}")


@pytest.mark.parametrize("model", MODELS)
def test_tool_calls_round_trip(gateway, fake, model):
    client = chat_client(gateway)
    asked = ask("use get_weather for Paris")
    first = client.chat.completions.create(model=model, messages=asked, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and first.choices[0].finish_reason == "tool_calls"
    follow = [*asked, first.choices[0].message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    assert "sunny" in client.chat.completions.create(model=model, messages=follow, tools=[WEATHER]).choices[0].message.content


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_messages_sync_and_streamed(gateway, fake, model):
    client = messages_client(gateway)
    message = client.messages.create(model=model, max_tokens=100, messages=ask())
    assert message.type == "message" and "hello there" in message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    with client.messages.stream(model=model, max_tokens=100, messages=ask("streamed words")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "streamed words" in text and final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_the_project_may_come_from_the_key(gateway, fake):
    chat_client(gateway, "@vertex-from-key").chat.completions.create(model=GEMINI, messages=ask())
    assert fake.requests[-1]["path"].startswith("/v1/projects/test-project/locations/us-central1/")


@pytest.mark.parametrize("spelled", [f"anthropic/{CLAUDE}", f"anthropic.{CLAUDE}"])  # ours, Portkey's
def test_an_explicit_publisher_names_the_model(gateway, fake, spelled):
    completion = chat_client(gateway).chat.completions.create(model=spelled, messages=ask())
    assert "hello there" in completion.choices[0].message.content
    assert fake.requests[-1]["path"].endswith(f"/publishers/anthropic/models/{CLAUDE}:rawPredict")


def test_another_publisher_is_refused_by_name(gateway, fake):
    with pytest.raises(openai.BadRequestError, match="not 'meta'"):
        chat_client(gateway).chat.completions.create(model="meta/llama-3.3-70b-instruct-maas", messages=ask())
    assert not fake.requests


def test_one_grant_serves_many_requests_on_a_cold_cache(gateway, fake):
    fake.grant_delay = 0.3  # the grant is slow: every request arrives while it is out
    client = chat_client(gateway, "@vertex-cold")
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda _: client.chat.completions.create(model=GEMINI, messages=ask()), range(32)))
    assert all("hello there" in reply.choices[0].message.content for reply in replies)
    assert fake.grants == 1
    assert len({request["headers"]["authorization"] for request in fake.requests}) == 1


def test_a_token_is_replaced_before_it_expires(gateway, fake):
    fake.token_lifetime = 2  # replaced after half its life, while still valid
    client = chat_client(gateway, "@vertex-short")
    client.chat.completions.create(model=GEMINI, messages=ask())
    client.chat.completions.create(model=GEMINI, messages=ask())
    assert fake.grants == 1
    time.sleep(1.1)
    client.chat.completions.create(model=GEMINI, messages=ask())
    assert fake.grants == 2
    first, _, last = (request["headers"]["authorization"] for request in fake.requests)
    assert first != last


def test_a_key_google_refuses_is_a_clear_error_without_the_key(gateway, fake, keys):
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": GEMINI, "messages": ask()},
                          headers=gateway.headers(**{"x-portkey-provider": "@vertex-unknown"}), timeout=10)
    assert response.status_code == 401 and response.headers["x-portkey-gateway-exception"] == "true"
    error = response.json()["error"]
    assert error["code"] == "vertex_credential_refused" and "unknown@test-project.iam.gserviceaccount.com" in error["message"]
    assert "PRIVATE KEY" not in response.text and not fake.requests  # the API was never called
    assert keys["unknown"]["private_key"].splitlines()[1] not in gateway.log_text()


def test_a_caller_brings_its_own_access_token(gateway, fake, google):
    fake.tokens["ya29.callers-own"] = Issued("main@test-project.iam.gserviceaccount.com", time.monotonic() + 60)
    client = openai.OpenAI(api_key="ya29.callers-own", base_url=gateway.v1, max_retries=0, default_headers={
        "x-portkey-api-key": gateway.admin_key, "x-portkey-provider": "vertex-ai",
        "x-portkey-custom-host": google.url + "/v1", "x-portkey-vertex-region": "us-central1",
        "x-portkey-vertex-project-id": "test-project"})
    assert "hello there" in client.chat.completions.create(model=CLAUDE, messages=ask()).choices[0].message.content
    assert fake.requests[-1]["headers"]["authorization"] == "Bearer ya29.callers-own" and fake.grants == 0


def test_a_caller_sends_its_service_account_key(gateway, fake, google, keys):
    trace_id = trace()
    headers = gateway.headers(**{"x-portkey-provider": "vertex-ai", "x-portkey-custom-host": google.url + "/v1",
                                 "x-portkey-trace-id": trace_id,
                                 "x-portkey-vertex-region": "us-central1",
                                 "x-portkey-vertex-service-account-json": json.dumps(keys["main"])})
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": GEMINI, "messages": ask()}, headers=headers,
                          timeout=10)
    assert response.status_code == 200, response.text
    assert fake.requests[-1]["path"].startswith("/v1/projects/test-project/")  # the key's project_id
    row = json.dumps(one_log(gateway, trace_id))
    assert "x-portkey-vertex-service-account-json" in row and "PRIVATE KEY" not in row


@pytest.mark.parametrize("missing, named", [("x-portkey-vertex-region", "vertex_region"),
                                            ("x-portkey-vertex-project-id", "vertex_project_id")])
def test_a_missing_setting_is_named(gateway, fake, google, missing, named):
    headers = {"x-portkey-provider": "vertex-ai", "x-portkey-custom-host": google.url + "/v1",
               "x-portkey-vertex-region": "us-central1", "x-portkey-vertex-project-id": "test-project",
               "authorization": "Bearer ya29.whatever"}
    del headers[missing]
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": GEMINI, "messages": ask()},
                          headers=gateway.headers(**headers), timeout=10)
    assert response.status_code == 400 and named in response.json()["error"]["message"]
    assert not fake.requests


def test_vertex_errors_reach_the_caller_translated(gateway, fake):
    with pytest.raises(openai.NotFoundError) as refused:
        chat_client(gateway).chat.completions.create(model="claude-unknown@20990101", messages=ask())
    assert "not found" in str(refused.value).lower()


def test_the_proxy_route_carries_the_token_too(gateway, fake):
    path = f"/projects/test-project/locations/us-central1/publishers/google/models/{GEMINI}:generateContent"
    response = httpx.post(gateway.v1 + path, json={"contents": [{"role": "user", "parts": [{"text": "hello proxy"}]}]},
                          headers=gateway.headers(**{"x-portkey-provider": "@vertex-main"}), timeout=10)
    assert response.status_code == 200, response.text
    assert "hello proxy" in response.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert fake.requests[-1]["path"] == "/v1" + path
    assert fake.requests[-1]["headers"]["authorization"].startswith("Bearer ya29.fake-")


@pytest.mark.parametrize("model", MODELS)
def test_the_responses_api_over_chat(gateway, fake, model):
    response = chat_client(gateway).responses.create(model=model, input="hello responses")
    assert "hello responses" in response.output_text and response.usage.output_tokens > 0


def test_a_stored_service_account_key_is_sealed_and_never_returned(gateway, fake, google, keys):
    admin = httpx.Client(base_url=gateway.v1, headers={"x-portkey-api-key": gateway.admin_key}, timeout=10)
    created = admin.post("/virtual-keys", json={
        "name": "Vertex sealed", "provider": "vertex-ai", "custom_host": google.url + "/v1",
        "vertexRegion": "us-central1", "vertexProjectId": "test-project",
        "vertexServiceAccountJson": json.dumps(keys["sealed"])})
    assert created.status_code == 200, created.text
    slug = created.json()["slug"]
    pem_line = keys["sealed"]["private_key"].splitlines()[1]  # a line of the key's base64 body
    shown = admin.get(f"/virtual-keys/{slug}").text + admin.get("/virtual-keys").text
    assert pem_line not in shown and "PRIVATE KEY" not in shown
    completion = chat_client(gateway, f"@{slug}").chat.completions.create(model=CLAUDE, messages=ask())
    assert "hello there" in completion.choices[0].message.content
    # Neither it nor the keys of the providers the config file declares are in the data directory unsealed.
    pem_lines = [key["private_key"].splitlines()[1].encode() for key in keys.values()]
    on_disk = [path for path in gateway.data_dir.rglob("*")
               if path.is_file() and any(line in path.read_bytes() for line in pem_lines)]
    assert not on_disk, f"a private key is in {on_disk} unsealed"


def test_a_config_target_may_carry_the_key_as_an_object(gateway, fake, google, keys):
    config = {"provider": "vertex-ai", "custom_host": google.url + "/v1", "vertex_region": "us-central1",
              "vertex_service_account_json": keys["main"]}  # Portkey's configs hold it parsed
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": CLAUDE, "messages": ask()}, timeout=10,
                          headers=gateway.headers(**{"x-portkey-config": json.dumps(config)}))
    assert response.status_code == 200, response.text
    assert fake.requests[-1]["path"].startswith("/v1/projects/test-project/locations/us-central1/publishers/anthropic/")
