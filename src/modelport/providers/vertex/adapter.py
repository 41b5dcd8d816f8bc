"""Vertex AI: unified chat to Gemini and Claude models, in their own formats, on Google's prediction API.

    {root}/projects/{project}/locations/{region}/publishers/{publisher}/models/{model}:{method}

``root`` is ``https://{region}-aiplatform.googleapis.com/v1``; ``https://aiplatform.googleapis.com/v1``
for region ``global`` and ``https://aiplatform.{us,eu}.rep.googleapis.com/v1`` for the multi-regions
(as anthropic-python's Vertex client has them); a custom host replaces it (the test suite's fake).

The publisher follows from the model name: ``publisher/model`` names it (``google/gemini-2.5-pro``,
``anthropic/claude-sonnet-4@20250514``), as does Portkey's ``publisher.model``
(``anthropic.claude-sonnet-4@20250514``); otherwise a ``claude-*`` model is Anthropic's, anything else
Google's. Gemini models take ``generateContent`` / ``streamGenerateContent?alt=sse`` with the Gemini
API's body (providers/google.py); Claude models take ``rawPredict`` / ``streamRawPredict`` with the
Anthropic Messages body (providers/anthropic.py) less ``model`` (the URL names it) plus
``"anthropic_version": "vertex-2023-10-16"``
(docs.cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude). Answers, streams and errors
are translated by the same modules; an error is read in whichever shape it comes (Vertex's own
``{"error": {"code", "status"}}``, or Anthropic's from the model).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ...errors import quoted
from .. import anthropic, google
from ..base import Endpoint, StreamTranslator, Target, UpstreamRequest
from ..google_responses import GeminiChatStream, to_chat_completion as gemini_completion, to_openai_error as gemini_error
from ..openai_shapes import include_usage
from . import BASE_URL
from .token import project_of

PROVIDER = "vertex-ai"
ANTHROPIC_VERSION = "vertex-2023-10-16"
PUBLISHERS = ("google", "anthropic")
_MULTI_REGIONS = {"us": "https://aiplatform.us.rep.googleapis.com/v1", "eu": "https://aiplatform.eu.rep.googleapis.com/v1"}
# Each lands in the URL (the region in the host name): only plain names, so none can reach another
# resource or host with the account's token.
_REGION = re.compile(r"[a-z][a-z0-9-]{0,62}")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}")
_MODEL = re.compile(r"(?:(?P<publisher>[a-z][a-z0-9-]*)/)?(?P<model>[A-Za-z0-9][A-Za-z0-9._@-]*)")
# Portkey's spelling: "anthropic.claude-3-5-sonnet@20240620" (its getModelAndProvider splits on the first dot
# when what precedes it is a publisher; Gemini names have dots of their own).
_PORTKEY_PUBLISHERS = ("google", "anthropic", "meta", "mistralai", "endpoints")


def publisher_and_model(model: Any) -> tuple[str, str]:
    """(publisher, model id) of a model name; a ``ValueError`` for a name that cannot be one."""
    match = _MODEL.fullmatch(model) if isinstance(model, str) else None
    if match is None:
        raise ValueError(f"Invalid model name for provider '{PROVIDER}': {quoted(str(model))}; name a Vertex model such as "
                         "'gemini-2.5-flash' or 'claude-sonnet-4@20250514' (or 'publisher/model').")
    name, publisher = match["model"], match["publisher"]
    if publisher is None and name.split(".", 1)[0] in _PORTKEY_PUBLISHERS and "." in name:
        publisher, name = name.split(".", 1)
    publisher = publisher or ("anthropic" if name.startswith("claude-") else "google")
    if publisher not in PUBLISHERS:
        raise ValueError(f"Provider '{PROVIDER}' serves models of publishers {' and '.join(PUBLISHERS)} through the "
                         f"unified API, not {quoted(publisher)}.")
    return publisher, name


def model_url(target: Target, publisher: str, model: str) -> str:
    """The model's resource URL on Vertex AI for the target's project and region."""
    settings = target.settings
    region = settings.get("vertex_region")
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ValueError(f"Provider '{PROVIDER}' needs vertex_region, a Vertex AI location such as 'us-central1' "
                         "or 'global' (header x-portkey-vertex-region)" + (f"; {quoted(str(region))} is not one." if region else "."))
    project = settings.get("vertex_project_id") or project_of(settings.get("vertex_service_account_json") or "{}")
    if not isinstance(project, str) or not _PROJECT.fullmatch(project):
        raise ValueError(f"Provider '{PROVIDER}' needs vertex_project_id, a Google Cloud project id (header "
                         "x-portkey-vertex-project-id, or the project_id of the service-account key).")
    return f"{api_root(target.base_url, region)}/projects/{project}/locations/{region}/publishers/{publisher}/models/{model}"


def api_root(base_url: str, region: str) -> str:
    """The regional API root, unless a custom host replaced the spec's base URL."""
    if base_url.rstrip("/") != BASE_URL:
        return base_url.rstrip("/")
    if region == "global":
        return BASE_URL
    return _MULTI_REGIONS.get(region) or f"https://{region}-aiplatform.googleapis.com/v1"


class VertexAdapter:
    """OpenAI chat <-> Gemini or Anthropic Messages on Vertex AI, by the model's publisher."""

    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        if endpoint != "chat":
            raise ValueError(f"Endpoint '{endpoint}' is not supported by provider '{PROVIDER}'.")
        publisher, model = publisher_and_model(body.get("model"))
        url = model_url(target, publisher, model)
        if publisher == "google":
            return google.chat_request(url, body, strict, PROVIDER)
        native = anthropic.to_messages_request(body, strict)
        native.pop("model", None)
        native["anthropic_version"] = ANTHROPIC_VERSION
        stream = bool(native.get("stream"))
        headers = {"content-type": "application/json"}
        if target.settings.get("anthropic_beta"):
            headers["anthropic-beta"] = str(target.settings["anthropic_beta"])
        method = "streamRawPredict" if stream else "rawPredict"
        return UpstreamRequest("POST", f"{url}:{method}", headers, orjson.dumps(native), stream)

    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        data = orjson.loads(body)
        if _publisher(request_body) == "anthropic":
            return orjson.dumps(anthropic.to_chat_completion(data))
        return orjson.dumps(gemini_completion(data, request_body))

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> StreamTranslator:
        if endpoint != "chat":
            raise ValueError(f"Streaming '{endpoint}' is not supported by provider '{PROVIDER}'.")
        if _publisher(request_body) == "anthropic":
            return anthropic.ChatStream(include_usage(request_body))
        return GeminiChatStream(request_body)

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data.get("type") == "error":  # Anthropic's shape, from a Claude model
            return anthropic.to_openai_error(status, body)
        return gemini_error(status, body)


def _publisher(request_body: dict[str, Any]) -> str:
    try:
        return publisher_and_model(request_body.get("model"))[0]
    except ValueError:
        return "google"


ADAPTER = VertexAdapter()
