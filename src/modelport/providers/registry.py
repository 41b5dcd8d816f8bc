"""The provider registry: one table, one place. Adding a provider is one entry: its settings and auth
are data on it (providers/base.py ``Setting``, ``ProviderAuth``), which every other layer reads.

Base URLs are each provider's API root as the proxy route sees it: ``{gateway}/v1/<path>`` goes to
``<base_url>/<path>``. Adapters (translation code) are named by module and loaded on first use, so a
provider without one costs nothing.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, Callable, Iterator

from .rewrite import UrlRewrite
from .records import PolicyStore
from .base import Adapter, AuthScheme, ExchangePolicy, ModelRule, ProviderJobs, ProviderSpec, Setting
from .bedrock.auth import AUTH as BEDROCK_AUTH
from .vertex import BASE_URL as VERTEX_BASE_URL
from .vertex.auth import VERTEX_AUTH

CHAT = frozenset({"chat"})
CHAT_EMBED = frozenset({"chat", "embeddings", "models"})
OPENAI_ALL = frozenset({"chat", "completions", "embeddings", "models"})
# OpenAI's audio API (platform.openai.com/docs/api-reference/audio): uploads and bodies pass through as sent.
AUDIO = frozenset({"transcriptions", "translations", "speech"})
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

# Vertex names the model in the path: /projects/p/locations/r/publishers/google/models/gemini-2.5-pro:generateContent.
VERTEX_MODELS = (ModelRule(rf"/projects/{_SEGMENT}/locations/{_SEGMENT}/publishers/{_SEGMENT}/models/(?P<model>[^/:]+):\w+",
                           template="{model}"),
                 ModelRule(r"/.*", method=None, body_field="model"))

# Settings more than one provider declares.
OPENAI_ORGANIZATION = Setting("openai_organization", header="openai-organization",
                              config_keys=("openai_organization", "openaiOrganization"), overridable=True,
                              upstream_header="openai-organization", doc="OpenAI organization id (OpenAI-Organization)")
OPENAI_PROJECT = Setting("openai_project", header="openai-project", config_keys=("openai_project", "openaiProject"),
                         overridable=True, upstream_header="openai-project", doc="OpenAI project id (OpenAI-Project)")
# One source of Anthropic's version header: the adapter and the proxy route both read this default.
ANTHROPIC_VERSION = Setting("anthropic_version", header="anthropic-version",
                            config_keys=("anthropic_version", "anthropicVersion"), overridable=True,
                            upstream_header="anthropic-version", default="2023-06-01",
                            doc="anthropic-version header (default 2023-06-01)")
ANTHROPIC_BETA = Setting("anthropic_beta", header="anthropic-beta", config_keys=("anthropic_beta", "anthropicBeta"),
                         overridable=True, upstream_header="anthropic-beta", doc="anthropic-beta header")
AZURE_SETTINGS = (
    # The resource is the host: a caller may not move a stored provider's credential to another one.
    Setting("resource_name", header="azure-resource-name",
            config_keys=("resource_name", "azure_resource_name", "resourceName"), required=True,
            doc="Azure OpenAI resource: https://<resource_name>.openai.azure.com"),
    Setting("deployment_id", header="azure-deployment-id",
            config_keys=("deployment_id", "azure_deployment_id", "deploymentName"), overridable=True,
            doc="Azure deployment (else the request's model)"),
    Setting("api_version", header="azure-api-version", config_keys=("api_version", "azure_api_version", "apiVersion"),
            overridable=True, doc="Azure api-version of deployment URLs (default 2024-10-21)"),
)
# Portkey's names (x-portkey-vertex-*). None may be overridden on a stored provider: the region is the host
# its token goes to, and the project and key are what an admin granted.
VERTEX_SETTINGS = (
    Setting("vertex_region", header="vertex-region", config_keys=("vertex_region", "vertexRegion"), required=True,
            doc="Vertex AI location: us-central1, europe-west4, global, us or eu"),
    Setting("vertex_project_id", header="vertex-project-id", config_keys=("vertex_project_id", "vertexProjectId"),
            doc="Google Cloud project (default: the service-account key's project_id)"),
    Setting("vertex_service_account_json", header="vertex-service-account-json",
            config_keys=("vertex_service_account_json", "vertexServiceAccountJson"), secret=True,
            doc="service-account key (the JSON file IAM creates) the gateway mints access tokens from"),
)

# Bedrock names the model in the path: /model/anthropic.claude-3-5-sonnet-20241022-v2:0/converse.
BEDROCK_MODELS = (ModelRule(r"/model/(?P<model>[^/]+)/[\w-]+", template="{model}"),)
# Portkey's names (x-portkey-aws-*, aws_* in configs). None is overridable on a stored provider: the keys
# and the region (the host) are the provider's. The STS endpoint is the operator's only (no header, no
# config key): a caller could otherwise send a request signed with the stored keys to a host of its own.
BEDROCK_SETTINGS = (
    Setting("aws_access_key_id", header="aws-access-key-id", config_keys=("aws_access_key_id", "awsAccessKeyId"),
            doc="AWS access key id"),
    Setting("aws_secret_access_key", header="aws-secret-access-key",
            config_keys=("aws_secret_access_key", "awsSecretAccessKey"), secret=True,
            doc="AWS secret access key (a stored provider may hold it as its secret instead)"),
    Setting("aws_session_token", header="aws-session-token", config_keys=("aws_session_token", "awsSessionToken"),
            secret=True, doc="session token of temporary AWS keys"),
    Setting("aws_region", header="aws-region", config_keys=("aws_region", "awsRegion"), required=True,
            doc="AWS region: https://bedrock-runtime.<aws_region>.amazonaws.com"),
    Setting("aws_role_arn", header="aws-role-arn", config_keys=("aws_role_arn", "awsRoleArn"),
            doc="IAM role to assume (STS AssumeRole) with the keys"),
    Setting("aws_external_id", header="aws-external-id", config_keys=("aws_external_id", "awsExternalId"),
            doc="ExternalId the role's trust policy asks for"),
    Setting("aws_sts_endpoint", doc="STS endpoint for AssumeRole (default https://sts.<aws_region>.amazonaws.com)"),
)

# One keyword-style entry per provider (providers/base.py ProviderSpec): an OpenAI-compatible provider
# with static auth and no settings is an id, a base URL and its unified endpoints.
_TABLE: tuple[ProviderSpec, ...] = (
    # Replicate: file URLs go into prediction inputs and must stay upstream; urls.stream is signed;
    # keys sharing one account see only their own predictions, trainings and files.
    # Its unified chat and images run predictions of the model named (providers/replicate/unified.py).
    ProviderSpec(id="replicate", base_url="https://api.replicate.com/v1", unified=frozenset({"chat", "images"}),
                 adapter="replicate.unified", rewrite=UrlRewrite(keep=("/files/",), stream_field="stream"),
                 models=REPLICATE_MODELS, policy="replicate.policy", jobs="replicate.ledger",
                 docs="its own API on the proxy route; chat and images over its models; prices predictions; isolates keys"),
    ProviderSpec(id="openai", base_url="https://api.openai.com/v1", unified=OPENAI_ALL | AUDIO | {"responses"},
                 settings=(OPENAI_ORGANIZATION, OPENAI_PROJECT)),
    ProviderSpec(id="anthropic", base_url="https://api.anthropic.com/v1", auth=X_API_KEY,
                 unified=frozenset({"chat", "messages"}), adapter="anthropic", settings=(ANTHROPIC_VERSION, ANTHROPIC_BETA),
                 caller_headers=("anthropic-version", "anthropic-beta")),
    ProviderSpec(id="azure-openai", base_url="https://{resource_name}.openai.azure.com/openai", auth=AZURE_KEY,
                 unified=frozenset({"chat", "completions", "embeddings", "responses", "images"}) | AUDIO, adapter="azure",
                 settings=AZURE_SETTINGS),
    ProviderSpec(id="google", base_url="https://generativelanguage.googleapis.com/v1beta", auth=GOOGLE_KEY,
                 unified=frozenset({"chat", "embeddings"}), adapter="google", models=GOOGLE_MODELS),
    # Vertex AI: Gemini and Claude models (providers/vertex); the base URL is the global endpoint, the
    # adapter picks the region's host. Tokens come from a service-account key or the caller.
    ProviderSpec(id="vertex-ai", base_url=VERTEX_BASE_URL, auth=VERTEX_AUTH, unified=CHAT, adapter="vertex.adapter",
                 settings=VERTEX_SETTINGS, models=VERTEX_MODELS,
                 docs="Gemini and Claude on Vertex AI; service-account keys become access tokens"),
    ProviderSpec(id="cohere", base_url="https://api.cohere.com/v1", unified=frozenset({"chat", "embeddings", "rerank"}),
                 adapter="cohere"),
    # AWS Bedrock: every request SigV4-signed by its auth hook, with stored keys or a role's (bedrock/auth.py);
    # chat over the Converse API for every model family (bedrock/converse.py).
    ProviderSpec(id="bedrock", base_url="https://bedrock-runtime.{aws_region}.amazonaws.com", auth=BEDROCK_AUTH,
                 unified=CHAT, adapter="bedrock.converse", settings=BEDROCK_SETTINGS, models=BEDROCK_MODELS,
                 docs="SigV4 with access keys or an assumed role; chat over Converse (Claude, Llama, Mistral, Nova)"),
    ProviderSpec(id="mistral-ai", base_url="https://api.mistral.ai/v1", unified=CHAT_EMBED),
    ProviderSpec(id="groq", base_url="https://api.groq.com/openai/v1",
                 unified=frozenset({"chat", "models", "transcriptions", "translations"})),
    ProviderSpec(id="together-ai", base_url="https://api.together.xyz/v1", unified=OPENAI_ALL | {"rerank"}),
    ProviderSpec(id="deepseek", base_url="https://api.deepseek.com/v1", unified=frozenset({"chat", "completions", "models"})),
    ProviderSpec(id="fireworks-ai", base_url="https://api.fireworks.ai/inference/v1", unified=OPENAI_ALL),
    ProviderSpec(id="openrouter", base_url="https://openrouter.ai/api/v1", unified=frozenset({"chat", "completions", "models"})),
    ProviderSpec(id="perplexity-ai", base_url="https://api.perplexity.ai", unified=CHAT),
    ProviderSpec(id="x-ai", base_url="https://api.x.ai/v1", unified=frozenset({"chat", "embeddings", "models"})),
    ProviderSpec(id="cerebras", base_url="https://api.cerebras.ai/v1", unified=frozenset({"chat", "models"})),
    ProviderSpec(id="deepinfra", base_url="https://api.deepinfra.com/v1/openai", unified=OPENAI_ALL),
    ProviderSpec(id="sambanova", base_url="https://api.sambanova.ai/v1", unified=frozenset({"chat", "models"})),
    ProviderSpec(id="ollama", base_url="http://localhost:11434/v1", auth=NO_AUTH, unified=OPENAI_ALL,
                 docs="local; set custom_host"),
)

PROVIDERS: dict[str, ProviderSpec] = {spec.id: spec for spec in _TABLE}


def get_provider(provider_id: str) -> ProviderSpec | None:
    return PROVIDERS.get(provider_id)


@cache
def load_adapter(module: str) -> Adapter:
    """The adapter object of ``modelport.providers.<module>`` (its ``ADAPTER``), imported once."""
    return importlib.import_module(f"modelport.providers.{module}").ADAPTER


def serves(spec: ProviderSpec, endpoint: str) -> bool:
    """Whether the unified API serves ``endpoint`` on ``spec``: natively, or Messages/Responses over its chat
    (a multi-step chat adapter, Replicate's, included)."""
    return endpoint in spec.unified or (endpoint in OVER_CHAT and "chat" in spec.unified)


def adapter_for(spec: ProviderSpec, endpoint: str | None = None) -> Adapter | None:
    """The adapter that translates ``endpoint`` for ``spec``; None when requests pass through as sent."""
    if endpoint in OVER_CHAT and endpoint not in spec.unified and "chat" in spec.unified:
        return _over_chat(endpoint, spec.id, spec.adapter)
    return load_adapter(spec.adapter) if spec.adapter else None


@cache
def _over_chat(endpoint: str, provider: str, module: str | None) -> Adapter:
    """``endpoint`` of ``provider`` through its chat adapter (OpenAI's body as sent when it has none)."""
    from .messages_over_chat import OPENAI_CHAT, MessagesOverChat, MessagesOverStepChat
    from .responses_over_chat import ResponsesOverChat, ResponsesOverStepChat

    chat = load_adapter(module) if module else OPENAI_CHAT
    multi_step = getattr(chat, "multi_step", False)
    if endpoint == "responses":
        return (ResponsesOverStepChat if multi_step else ResponsesOverChat)(provider, chat)
    return (MessagesOverStepChat if multi_step else MessagesOverChat)(provider, chat)


def make_policy(spec: ProviderSpec, settings: Any, store: PolicyStore) -> ExchangePolicy | None:
    """The provider's ``ExchangePolicy`` for these settings and store (None when it has none or it is off)."""
    if not spec.policy:
        return None
    return importlib.import_module(f"modelport.providers.{spec.policy}").make_policy(settings, store)


def all_settings() -> Iterator[tuple[ProviderSpec, Setting]]:
    """Every provider's settings, for the layers that read declarations (headers, configs, control plane)."""
    for spec in PROVIDERS.values():
        for setting in spec.settings:
            yield spec, setting


def setting_headers() -> dict[str, str]:
    """``x-portkey-<header>`` (without the prefix) → setting name, over every provider's declarations."""
    found: dict[str, str] = {}
    for spec, setting in all_settings():
        if setting.header is None:
            continue
        if found.setdefault(setting.header, setting.name) != setting.name:
            raise ValueError(f"x-portkey-{setting.header} names two settings: {found[setting.header]}, {setting.name} ({spec.id})")
    return found


def setting_config_keys() -> dict[str, str]:
    """Each spelling a config target or a Portkey body may use → setting name (``azure_resource_name``,
    ``resourceName`` → ``resource_name``), over every provider's declarations."""
    found: dict[str, str] = {}
    for spec, setting in all_settings():
        for key in (setting.name, *setting.config_keys):
            if found.setdefault(key, setting.name) != setting.name:
                raise ValueError(f"config key {key!r} names two settings: {found[key]}, {setting.name} ({spec.id})")
    return found


def make_jobs(spec: ProviderSpec, settings: Any) -> ProviderJobs | None:
    """The provider's ``ProviderJobs`` for the log writer (None when it starts no jobs); its calls to the
    provider go through the ``ProviderApi`` the writer hands it."""
    return _jobs_module(spec.jobs).make_jobs(settings) if spec.jobs else None


def job_steps(provider_id: str | None) -> Callable[[str, str], str | None] | None:
    """``step_of(method, path)`` of the provider's jobs module: a record's step in a job's lifecycle."""
    spec = PROVIDERS.get(provider_id or "")
    return _jobs_module(spec.jobs).step_of if spec is not None and spec.jobs else None


@cache
def _jobs_module(module: str) -> Any:
    return importlib.import_module(f"modelport.providers.{module}")


def with_jobs() -> list[ProviderSpec]:
    """The providers that start jobs (``ProviderSpec.jobs``)."""
    return [spec for spec in PROVIDERS.values() if spec.jobs]
