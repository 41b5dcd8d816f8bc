"""Azure OpenAI: OpenAI's body format at deployment-scoped URLs, with ``api-key`` auth and an api-version.

URL: ``{base}/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=...`` where
``base`` is ``https://{resource_name}.openai.azure.com/openai``. The deployment comes from the target's
``deployment_id`` setting, else the request's ``model``.

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


class AzureOpenAIAdapter:
    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        deployment = target.settings.get("deployment_id") or body.get("model")
        if not deployment:
            raise ValueError("azure-openai needs a deployment: set deployment_id on the provider or send 'model'")
        if endpoint == "responses":
            url, body = f"{target.base_url}/v1/responses", {**body, "model": deployment}
        else:
            version = target.settings.get("api_version") or DEFAULT_API_VERSION
            url = f"{target.base_url}/deployments/{deployment}/{_PATHS[endpoint]}?api-version={version}"
        return UpstreamRequest("POST", url, {"content-type": "application/json"}, orjson.dumps(body), bool(body.get("stream")))

    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        return body

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> PassThroughStream:
        return PassThroughStream()

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        return openai_error_body(status, body)  # Azure's errors are already OpenAI's shape


ADAPTER = AzureOpenAIAdapter()
