"""The provider registry: one table, one place. Adding an OpenAI-compatible provider is one entry.

Base URLs are each provider's API root as the proxy route sees it: ``{gateway}/v1/<path>`` goes to
``<base_url>/<path>``. Adapters (translation code) are named by module and loaded on first use, so a
provider without one costs nothing.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

from ..gateway.rewrite import UrlRewrite
from .base import BEARER, Adapter, AuthScheme, ExchangePolicy, ModelRule, ProviderAuth, ProviderSpec

if TYPE_CHECKING:
    from ..store.base import Store

CHAT = frozenset({"chat"})
CHAT_EMBED = frozenset({"chat", "embeddings", "models"})
OPENAI_ALL = frozenset({"chat", "completions", "embeddings", "models"})
# Endpoints every chat provider serves through its chat adapter unless it has its own
# (messages_over_chat.py, responses_over_chat.py).
OVER_CHAT = frozenset({"messages", "responses"})

X_API_KEY = AuthScheme("header", "x-api-key")
AZURE_KEY = AuthScheme("header", "api-key")
GOOGLE_KEY = AuthScheme("header", "x-goog-api-key")
NO_AUTH = AuthScheme("none")


def _replicate_names(ref: str) -> tuple[str, ...]:
    """``owner/name:version`` may be allowed as itself, as its model or as its version id (research/replicate.md §1)."""
    model, _, version = ref.partition(":")
    return tuple(filter(None, (ref, model if version else None, version or None)))


_SEGMENT = r"[^/]+"
# Where Replicate requests run a model (research/replicate.md §1: rows 1-3, 19, 24, 26). A deployment
# runs whatever model its owner put on it, so an allow-list names it as "deployments/<owner>/<name>".
REPLICATE_MODELS = (
    ModelRule(rf"/models/(?P<owner>{_SEGMENT})/(?P<name>{_SEGMENT})/predictions", template="{owner}/{name}"),
    ModelRule(rf"/models/(?P<owner>{_SEGMENT})/(?P<name>{_SEGMENT})/versions/(?P<version>{_SEGMENT})/trainings",
              template="{owner}/{name}:{version}", names=_replicate_names),
    ModelRule(r"/predictions", body_field="version", required=True, names=_replicate_names),
    ModelRule(rf"/deployments/(?P<owner>{_SEGMENT})/(?P<name>{_SEGMENT})/predictions",
              template="deployments/{owner}/{name}"),
    ModelRule(rf"/deployments/(?P<owner>{_SEGMENT})/(?P<name>{_SEGMENT})", method="PATCH",
              template="deployments/{owner}/{name}"),
    ModelRule(r"/deployments", body_field="model", required=True),
)
# Gemini names the model in the path: /models/gemini-2.0-flash:generateContent.
GOOGLE_MODELS = (ModelRule(rf"/models/(?P<model>[^/:]+):\w+", template="{model}"),
                 ModelRule(r"/.*", method=None, body_field="model"))

# (id, base URL, auth, unified endpoints, adapter module, extra spec fields)
_TABLE: list[tuple[str, str, ProviderAuth | None, frozenset[str], str | None, dict[str, Any]]] = [
    # Replicate: file URLs go into prediction inputs and must stay upstream; urls.stream is signed;
    # keys sharing one account see only their own predictions, trainings and files.
    # Its unified chat and images run predictions of the model named (providers/replicate/unified.py).
    ("replicate", "https://api.replicate.com/v1", None, frozenset({"chat", "images"}), "replicate.unified",
     {"rewrite": UrlRewrite(keep=("/files/",), stream_field="stream"), "models": REPLICATE_MODELS,
      "policy": "replicate.policy",
      "docs": "its own API on the proxy route; chat and images over its models; prices predictions; isolates keys"}),
    ("openai", "https://api.openai.com/v1", None, OPENAI_ALL | {"responses"}, None, {}),
    ("anthropic", "https://api.anthropic.com/v1", X_API_KEY, frozenset({"chat", "messages"}), "anthropic",
     {"default_headers": {"anthropic-version": "2023-06-01"}, "caller_headers": ("anthropic-version", "anthropic-beta")}),
    ("azure-openai", "https://{resource_name}.openai.azure.com/openai", AZURE_KEY,
     frozenset({"chat", "completions", "embeddings", "responses"}), "azure", {"requires": ("resource_name",)}),
    ("google", "https://generativelanguage.googleapis.com/v1beta", GOOGLE_KEY,
     frozenset({"chat", "embeddings"}), "google", {"models": GOOGLE_MODELS}),
    ("cohere", "https://api.cohere.com/v1", None, frozenset({"chat", "embeddings"}), "cohere", {}),
    ("mistral-ai", "https://api.mistral.ai/v1", None, CHAT_EMBED, None, {}),
    ("groq", "https://api.groq.com/openai/v1", None, frozenset({"chat", "models"}), None, {}),
    ("together-ai", "https://api.together.xyz/v1", None, OPENAI_ALL, None, {}),
    ("deepseek", "https://api.deepseek.com/v1", None, frozenset({"chat", "completions", "models"}), None, {}),
    ("fireworks-ai", "https://api.fireworks.ai/inference/v1", None, OPENAI_ALL, None, {}),
    ("openrouter", "https://openrouter.ai/api/v1", None, frozenset({"chat", "completions", "models"}), None, {}),
    ("perplexity-ai", "https://api.perplexity.ai", None, CHAT, None, {}),
    ("x-ai", "https://api.x.ai/v1", None, frozenset({"chat", "embeddings", "models"}), None, {}),
    ("cerebras", "https://api.cerebras.ai/v1", None, frozenset({"chat", "models"}), None, {}),
    ("deepinfra", "https://api.deepinfra.com/v1/openai", None, OPENAI_ALL, None, {}),
    ("sambanova", "https://api.sambanova.ai/v1", None, frozenset({"chat", "models"}), None, {}),
    ("ollama", "http://localhost:11434/v1", NO_AUTH, OPENAI_ALL, None, {"docs": "local; set custom_host"}),
]

PROVIDERS: dict[str, ProviderSpec] = {
    pid: ProviderSpec(id=pid, base_url=base, auth=auth or BEARER, unified=unified, adapter=module, **extra)
    for pid, base, auth, unified, module, extra in _TABLE
}


def get_provider(provider_id: str) -> ProviderSpec | None:
    return PROVIDERS.get(provider_id)


@cache
def load_adapter(module: str) -> Adapter:
    """The adapter object of ``modelport.providers.<module>`` (its ``ADAPTER``), imported once."""
    return importlib.import_module(f"modelport.providers.{module}").ADAPTER


def serves(spec: ProviderSpec, endpoint: str) -> bool:
    """Whether the unified API serves ``endpoint`` on ``spec``: natively, or Messages/Responses over its chat
    (Responses only over a chat adapter of one request and one response: a multi-step one, Replicate's, has
    no Responses translation yet)."""
    if endpoint in spec.unified:
        return True
    if endpoint not in OVER_CHAT or "chat" not in spec.unified:
        return False
    return endpoint == "messages" or not (spec.adapter and getattr(load_adapter(spec.adapter), "multi_step", False))


def adapter_for(spec: ProviderSpec, endpoint: str | None = None) -> Adapter | None:
    """The adapter that translates ``endpoint`` for ``spec``; None when requests pass through as sent."""
    if endpoint in OVER_CHAT and endpoint not in spec.unified and "chat" in spec.unified:
        return _over_chat(endpoint, spec.id, spec.adapter)
    return load_adapter(spec.adapter) if spec.adapter else None


@cache
def _over_chat(endpoint: str, provider: str, module: str | None) -> Adapter:
    """``endpoint`` of ``provider`` through its chat adapter (OpenAI's body as sent when it has none)."""
    from .messages_over_chat import OPENAI_CHAT, MessagesOverChat, MessagesOverStepChat
    from .responses_over_chat import ResponsesOverChat

    chat = load_adapter(module) if module else OPENAI_CHAT
    if endpoint == "responses":
        return ResponsesOverChat(provider, chat)
    return (MessagesOverStepChat if getattr(chat, "multi_step", False) else MessagesOverChat)(provider, chat)


def make_policy(spec: ProviderSpec, settings: Any, store: "Store") -> ExchangePolicy | None:
    """The provider's ``ExchangePolicy`` for these settings and store (None when it has none or it is off)."""
    if not spec.policy:
        return None
    return importlib.import_module(f"modelport.providers.{spec.policy}").make_policy(settings, store)
