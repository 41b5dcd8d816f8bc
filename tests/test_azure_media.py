"""Azure OpenAI's images and audio through the gateway: OpenAI's bodies at the deployment's URL with its
api-version, the upload and the audio bytes passed as they are, driven by the real openai SDK."""

from __future__ import annotations

import time
from typing import Any, Iterator

import httpx
import openai
import pytest
from aiohttp import web

from tests.fakes.openai import OpenAIError, _json
from tests.fakes.openai_audio import _transcribe, speech, speech_bytes, transcript_of
from tests.fakes.server import FakeServer
from tests.test_audio_api import wav
from tests.test_logging import one_log, trace

AZURE_KEY = "test-azure-key"
API_VERSION = "2024-10-21"  # the adapter's default


@pytest.fixture(scope="module")
def fake_azure() -> Iterator[tuple[FakeServer, list[tuple[str, dict[str, str], str]]]]:
    """Azure's deployment-scoped data plane: ``/openai/deployments/{deployment}/...?api-version=``, an
    ``api-key`` header (never a bearer token), OpenAI's bodies. Records (deployment, query, path tail)."""
    seen: list[tuple[str, dict[str, str], str]] = []

    @web.middleware
    async def azure_rules(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.match_info.get("deployment", ""), dict(request.query), request.path.rsplit("/", 2)[-2:][-1]))
        if request.headers.get("api-key") != AZURE_KEY or "authorization" in request.headers:
            return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid subscription key."}},
                                     status=401)
        if "api-version" not in request.query:
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        try:
            return await handler(request)
        except OpenAIError as error:
            return error.response

    async def images(request: web.Request) -> web.Response:
        body = await request.json()
        return _json({"created": int(time.time()), "data": [{"url": f"https://images.example/{body['prompt']}.png",
                                                             "revised_prompt": body["prompt"]}]})

    async def transcriptions(request: web.Request) -> web.Response:
        return await _transcribe(request, "transcribe")

    app = web.Application(middlewares=[azure_rules], client_max_size=25 * 1024 * 1024)
    app.router.add_post("/openai/deployments/{deployment}/images/generations", images)
    app.router.add_post("/openai/deployments/{deployment}/audio/speech", speech)
    app.router.add_post("/openai/deployments/{deployment}/audio/transcriptions", transcriptions)
    with FakeServer(app) as server:
        yield server, seen


def sdk(gateway, server: FakeServer, trace_id: str | None = None, **headers: str) -> openai.OpenAI:
    extra = {"x-portkey-provider": "azure-openai", "x-portkey-custom-host": server.url + "/openai", **headers}
    if trace_id:
        extra["x-portkey-trace-id"] = trace_id
    return openai.OpenAI(api_key=AZURE_KEY, base_url=gateway.v1, max_retries=0, default_headers=extra)


def test_an_image_is_generated_at_the_deployment_named_by_the_model(open_gateway, fake_azure):
    server, seen = fake_azure
    result = sdk(open_gateway, server).images.generate(model="dall-e-3", prompt="a-lighthouse")
    assert result.data[0].url == "https://images.example/a-lighthouse.png"
    assert seen[-1][:2] == ("dall-e-3", {"api-version": API_VERSION})


def test_speech_comes_back_as_the_bytes_azure_sent(open_gateway, fake_azure):
    server, seen = fake_azure
    trace_id = trace()
    audio = sdk(open_gateway, server, trace_id).audio.speech.create(model="tts-1", voice="alloy", input="hello there")
    assert audio.content == speech_bytes("hello there") and audio.response.headers["content-type"] == "audio/mpeg"
    assert seen[-1][0] == "tts-1"
    record = one_log(open_gateway, trace_id)
    assert record["provider"] == "azure-openai" and record["status"] == 200 and record["endpoint"] == "speech"
    # Azure prices per deployment, which no shipped table knows: unpriced and saying so, never free
    # (an operator's price file may name azure-openai's deployments).
    assert record["cost_status"] == "unpriced" and "azure-openai" in record["cost_reason"]


def test_an_upload_goes_as_sent_to_the_deployment_its_form_names(open_gateway, fake_azure):
    server, seen = fake_azure
    result = sdk(open_gateway, server).audio.transcriptions.create(model="whisper-1", file=("note.wav", wav(2.0)))
    assert result.text == transcript_of(2.0)
    assert seen[-1][:2] == ("whisper-1", {"api-version": API_VERSION})


def test_the_deployment_and_api_version_settings_win_over_the_model(open_gateway, fake_azure):
    server, seen = fake_azure
    client = sdk(open_gateway, server, **{"x-portkey-azure-deployment-id": "my-whisper",
                                           "x-portkey-azure-api-version": "2025-04-01-preview"})
    client.audio.transcriptions.create(model="whisper-1", file=("note.wav", wav(1.0)))
    assert seen[-1][:2] == ("my-whisper", {"api-version": "2025-04-01-preview"})


def test_an_upload_naming_no_deployment_is_a_clear_400(open_gateway, fake_azure):
    server, seen = fake_azure
    before = len(seen)
    response = httpx.post(open_gateway.v1 + "/audio/transcriptions", files={"file": ("note.wav", wav(1.0))},
                          headers={"x-portkey-provider": "azure-openai", "x-portkey-custom-host": server.url + "/openai",
                                   "authorization": f"Bearer {AZURE_KEY}"})
    assert response.status_code == 400 and "deployment" in response.json()["error"]["message"]
    assert response.headers["x-portkey-gateway-exception"] == "true" and len(seen) == before
