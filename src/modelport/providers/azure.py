"""Azure OpenAI: OpenAI's body format at deployment-scoped URLs, with ``api-key`` auth and an api-version.

URL: ``{base}/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=...`` where
``base`` is ``https://{resource_name}.openai.azure.com/openai``. The deployment comes from the target's
``deployment_id`` setting, else the request's ``model``.

Images and audio (``images/generations``, ``audio/speech``, ``audio/transcriptions``,
``audio/translations``) take OpenAI's bodies at the deployment's URL with the api-version (Azure OpenAI
REST reference, GA 2024-10-21: image generation, speech, transcriptions and translations), so they are
``sent_as_is``: the gateway sends the caller's body (a multipart upload included) and relays the answer
(audio bytes included) untouched; only the URL is Azure's.

The Responses API has no deployment URL: it is served only by Azure's OpenAI-compatible v1 API,
``{base}/v1/responses`` with no api-version (the provider's ``api_version`` dates the deployment URLs
only), the deployment named in ``model`` (learn.microsoft.com, Azure OpenAI "Responses API" how-to and
"API version lifecycle"). Its bodies and events are OpenAI's.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.providers.base import Endpoint, Target, UpstreamRequest
from modelport.providers.openai_shapes import PassThroughStream, openai_error_body

DEFAULT_API_VERSION = "2024-10-21"
_PATHS = {"chat": "chat/completions", "completions": "completions", "embeddings": "embeddings"}
_AS_SENT_PATHS = {"images": "images/generations", "speech": "audio/speech", "transcriptions": "audio/transcriptions",
                  "translations": "audio/translations"}


class AzureOpenAIAdapter:
    sent_as_is = frozenset(_AS_SENT_PATHS)

    def url_as_sent(self, endpoint: Endpoint, target: Target, model: str | None) -> str:
        return self._deployment_url(target, target.settings.get("deployment_id") or model, _AS_SENT_PATHS[endpoint])

    def _deployment_url(self, target: Target, deployment: str | None, path: str) -> str:
        if not deployment:
            raise ValueError("azure-openai needs a deployment: set deployment_id on the provider or send 'model'")
        version = target.settings.get("api_version") or DEFAULT_API_VERSION
        return f"{target.base_url}/deployments/{deployment}/{path}?api-version={version}"

    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        deployment = target.settings.get("deployment_id") or body.get("model")
        if endpoint == "responses":
            if not deployment:
                raise ValueError("azure-openai needs a deployment: set deployment_id on the provider or send 'model'")
            url, body = f"{target.base_url}/v1/responses", {**body, "model": deployment}
        else:
            url = self._deployment_url(target, deployment, _PATHS[endpoint])
        return UpstreamRequest("POST", url, {"content-type": "application/json"}, orjson.dumps(body), bool(body.get("stream")))

    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        return body

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> PassThroughStream:
        return PassThroughStream()

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        return openai_error_body(status, body)  # Azure's errors are already OpenAI's shape


ADAPTER = AzureOpenAIAdapter()
