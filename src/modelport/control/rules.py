"""What a stored record must be, whichever front door it comes in by.

The control-plane API (``keys.py``, ``providers.py``, ``configs.py`` here), the admin CLI
(``cli/admin.py``) and the config file's ``[[providers]]`` (``server/bootstrap.py``) check through
these functions, so what one of them refuses cannot be stored through another. Each takes the name
the caller knows the value by (``allowed_providers`` for the API, ``--provider`` for the CLI) and
raises ``Invalid`` or ``InvalidConfig``: a 400 for the API, exit code 2 for the CLI.

As in ``schema.py``, messages do not repeat free text the caller sent (it may be a pasted secret);
they do name ``@slugs`` and provider ids, which are identifiers the caller needs to see to fix.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..gateway.configs import validate_config
from ..errors import InvalidConfig
from ..gateway.headers import metadata_problem
from ..hosts import HostRules
from ..providers.registry import PROVIDERS, all_settings
from ..store import Store
from ..store.base import SLUG_PATTERN, SealedSetting, SecretSetting
from .schema import Invalid, choice, shown, url

PROVIDER_IDS = tuple(sorted(PROVIDERS))
# Settings a stored provider may carry: every provider's declarations (providers/registry.py), in order.
STORED_SETTINGS = tuple(dict.fromkeys(setting.name for _, setting in all_settings()))
# Those sealed by the vault at rest (Setting.secret): never shown, logged or returned.
SECRET_SETTINGS = frozenset(setting.name for _, setting in all_settings() if setting.secret)
_CUSTOM_HOST = url("custom_host")


# -- stored providers ----------------------------------------------------------------------------
def provider_id(value: Any, where: str) -> str:
    """A provider id of the registry (``replicate``, ``azure-openai``...)."""
    return choice(value, where, PROVIDER_IDS)


def provider_settings(raw: Mapping[str, Any], where: str, also: Sequence[str] = (),
                      provider: str | None = None) -> dict[str, str]:
    """Only settings something reads: one nobody reads would look applied and not be. The one check of
    a stored provider's settings, whether they come by the API, the CLI or the config file; secret ones
    (``Setting.secret``) come back as ``SecretSetting``, which the store seals.

    ``provider``: the provider they are for, whose declared settings are the only ones taken (Azure's
    ``api_version`` on a Replicate provider would be stored and read by nothing); None only where the
    provider is not known yet (a provider added under an integration takes the integration's).
    ``also``: other keys the caller's object may hold (and has taken out), named in the refusal.
    """
    known = [s.name for s in PROVIDERS[provider].settings] if provider in PROVIDERS else list(STORED_SETTINGS)
    unknown = sorted(name for name in raw if name not in known)
    if unknown:
        whose = f"provider {provider!r}" if provider in PROVIDERS else "any provider"
        takes = f"its settings: {', '.join((*known, *also))}" if known or also else "it takes none"
        raise Invalid(f"{where}: {', '.join(map(shown, unknown))} is not a setting of {whose}; {takes}")
    settings: dict[str, str] = {}
    for name, value in raw.items():
        if value is not None and (not isinstance(value, str) or not value):
            raise Invalid(f"{where}.{name} must be a non-empty string")
        if value:
            # A secret is marked for the store to seal; one already sealed (an update's current settings) stays so.
            secret = name in SECRET_SETTINGS and not isinstance(value, SealedSetting)
            settings[name] = SecretSetting(value) if secret else value
    return settings


def custom_host(value: Any, where: str) -> str:
    """An absolute http(s) URL, without a trailing slash (its shape only: see ``stored_host``)."""
    return _CUSTOM_HOST.convert(value, where)


def stored_host(value: Any, where: str, host_rules: HostRules) -> str:
    """A stored provider's custom host, where its secret is sent: well-formed, and within the SSRF rules
    unless the operator trusts it. Untrusted hosts are guarded on every request anyway; refused here, the
    mistake shows where it is made."""
    return host_rules.check_stored_host(custom_host(value, where))


def require_settings(provider: str, settings: Mapping[str, Any], host: str | None, *,
                     name_of: Callable[[str], str] = str, host_field: str = "custom_host") -> None:
    """Refuse now what could never be called: e.g. Azure without a resource name (or a custom host).

    ``name_of`` spells a setting the way the caller writes it (``resourceName``, ``--setting resource_name=…``).
    """
    missing = [name for name in PROVIDERS[provider].requires if not settings.get(name)]
    if missing and not host:
        raise Invalid(f"provider {provider!r} needs {', '.join(map(name_of, missing))} (or {host_field})")


# -- gateway API keys ----------------------------------------------------------------------------
def key_metadata(value: Any, where: str) -> dict[str, Any]:
    """A key's default metadata: merged into every request's, so bounded as x-portkey-metadata is
    (docs/bounds.md)."""
    problem = metadata_problem(value)
    if problem is not None:
        raise Invalid(f"{where} {problem}")
    return value


def allowed_providers(entries: Sequence[str], store: Store, where: str) -> list[str]:
    """Provider ids and ``@slugs`` of stored providers: a key limited to what does not exist could call nothing."""
    for entry in entries:
        if entry in PROVIDERS:
            continue
        slug = entry[1:] if entry.startswith("@") else None
        if slug is None or not SLUG_PATTERN.match(slug):
            hint = f"; write a stored provider as '@{entry}'" if store.get_provider(entry) is not None else ""
            raise Invalid(f"{where}: {shown(entry)} is neither a provider id (e.g. replicate) nor an @slug{hint}")
        if store.get_provider(slug) is None:
            raise Invalid(f"{where}: no stored provider '@{slug}'; store it first, or check the slug")
    return list(entries)


# -- saved configs -------------------------------------------------------------------------------
def saved_config(config: dict[str, Any]) -> None:
    """The checks the gateway runs on every request, plus: no provider key in a config stored as plain JSON."""
    try:
        validate_config(config)
    except InvalidConfig:
        raise
    except (TypeError, ValueError, AttributeError):
        # A shape the validator did not foresee (say, a list where it expects a name): still the caller's error.
        raise InvalidConfig("config is malformed: check its field types against Portkey's config schema") from None
    where = _credential_in(config, "config")
    if where:
        raise InvalidConfig(f"{where}.api_key: a saved config cannot hold a provider key; store the key as a "
                            "virtual key and reference it with virtual_key or provider '@slug'")  # fmt: skip


def _credential_in(node: Any, path: str) -> str | None:
    if not isinstance(node, dict):
        return None
    if "api_key" in node:
        return path
    for index, target in enumerate(node.get("targets") or ()):
        found = _credential_in(target, f"{path}.targets[{index}]")
        if found:
            return found
    return None
