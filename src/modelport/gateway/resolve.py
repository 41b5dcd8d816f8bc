"""Which upstream, with which credential: ``@slug`` / virtual key / provider id (+ custom host).

A stored credential only ever goes to the host its provider record names (set by an admin); a
caller may choose a host only for its own key, and that host passes the SSRF rules. A stored record's
own ``custom_host`` is connected to through the guarded session too, unless the operator trusts it
(``HostRules``): an admin key set it, not the operator's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Protocol

from ..providers.base import ProviderSpec, Target
from ..providers.registry import PROVIDERS, get_provider
from .auth import Principal
from ..errors import BadRequest, Forbidden, ForbiddenHost, UnknownProvider, quoted
from ..hosts import HostRules, check_custom_host
from ..usage.limits import Budget, provider_budget, provider_token_limits
from .limits import Rule, provider_rules
from .store_cache import StoreCache, StoreVersion


def overridable(spec: ProviderSpec) -> frozenset[str]:
    """Settings a caller may set per request even on a stored provider (``Setting.overridable``): none
    of them changes where the credential goes."""
    return frozenset(s.name for s in spec.settings if s.overridable)


@dataclass(frozen=True, slots=True)
class Resolved:
    spec: ProviderSpec
    target: Target
    caller_chosen_host: bool  # connect through the SSRF-guarded session (a host the operator did not name)
    allowed_models: frozenset[str] | None = None  # a stored provider's allow-list; None = every model
    rate_limits: tuple[Rule, ...] = ()  # a stored provider's request limits, checked per attempt
    budget: Budget | None = None  # a stored provider's budget, reserved per attempt
    token_limits: tuple[Budget, ...] = ()  # its token rate limits, reserved the same way


class ProviderStore(Protocol):
    def data_version(self) -> Hashable: ...

    def resolve_provider(self, slug: str) -> Any: ...


class TargetResolver:
    def __init__(self, store: ProviderStore, version: StoreVersion, host_rules: HostRules = HostRules()) -> None:
        self._host_rules = host_rules
        # Each record is cached with whether its host must go through the SSRF guard: decided once per load.
        self._stored: StoreCache[tuple[Any, bool] | None] = StoreCache(version, lambda slug: self._load(store, slug))

    def resolve(
        self,
        principal: Principal,
        *,
        provider: str | None,
        virtual_key: str | None = None,
        custom_host: str | None = None,
        caller_key: str | None = None,
        caller_settings: Mapping[str, str] | None = None,
    ) -> Resolved:
        caller_settings = caller_settings or {}
        if provider and provider.startswith("@"):
            resolved = self._stored_target(provider[1:], custom_host, caller_settings)
        elif virtual_key and not provider:
            resolved = self._stored_target(virtual_key, custom_host, caller_settings)
        elif provider:
            resolved = self._builtin_target(provider, custom_host, caller_key, caller_settings)
        else:
            raise BadRequest(
                "no provider chosen: send x-portkey-provider (a provider id like 'replicate' or a stored "
                "'@slug'), x-portkey-virtual-key or x-portkey-config, or name the model '@slug/model'",
                code="missing_provider",
            )
        if not principal.may_use(resolved.spec.id, resolved.target.slug):
            name = f"@{resolved.target.slug}" if resolved.target.slug else resolved.spec.id
            raise Forbidden(f"this gateway API key may not use provider {name}")
        return resolved

    def stored(self, slug: str) -> Resolved:
        """A stored provider as its own settings have it (no caller in the way: a provider's webhook)."""
        return self._stored_target(slug, None, {})

    def _stored_target(self, slug: str, custom_host: str | None, caller_settings: Mapping[str, str]) -> Resolved:
        record, guarded = self._stored.get(slug, size=len(slug)) or (None, False)
        if record is None:
            raise UnknownProvider(
                f"no stored provider {quoted('@' + slug)}: create it with `modelport providers add` or POST /v1/providers"
            )
        if custom_host:
            raise ForbiddenHost(
                "x-portkey-custom-host cannot be used with a stored provider: its credential only goes to the "
                "host an admin configured (set custom_host on the stored provider instead)"
            )
        spec = _spec(record.provider)
        settings = dict(record.settings or {})
        if caller_settings:
            allowed = overridable(spec)
            settings.update({k: v for k, v in caller_settings.items() if k in allowed})
        base = (record.custom_host or _base_url(spec, settings)).rstrip("/")
        target = Target(provider=spec.id, base_url=base, api_key=record.secret, settings=settings, slug=slug)
        return Resolved(spec, target, caller_chosen_host=guarded, allowed_models=record.allowed_models,
                        rate_limits=provider_rules(slug, record.rate_limits),
                        budget=provider_budget(slug, record.usage_limits, record.usage_anchor),
                        token_limits=provider_token_limits(slug, record.rate_limits))

    def _load(self, store: ProviderStore, slug: str) -> tuple[Any, bool] | None:
        record = store.resolve_provider(slug)
        if record is None:
            return None
        return record, bool(record.custom_host) and not self._host_rules.trusts(record.custom_host)

    def _builtin_target(
        self, provider: str, custom_host: str | None, caller_key: str | None, caller_settings: Mapping[str, str]
    ) -> Resolved:
        spec = _spec(provider)
        settings = dict(caller_settings)
        base = check_custom_host(custom_host, self._host_rules.allow_private) if custom_host else _base_url(spec, settings)
        target = Target(provider=spec.id, base_url=base, api_key=caller_key, settings=settings)
        return Resolved(spec, target, caller_chosen_host=bool(custom_host))


def _spec(provider: str) -> ProviderSpec:
    spec = get_provider(provider)
    if spec is None:
        known = ", ".join(sorted(PROVIDERS))
        raise UnknownProvider(f"unknown provider {quoted(provider)}; use a stored '@slug' or one of: {known}")
    return spec


def _base_url(spec: ProviderSpec, settings: Mapping[str, Any]) -> str:
    missing = [spec.setting(name) for name in spec.requires if not settings.get(name)]
    if missing:
        header = ", ".join(f"x-portkey-{s.header}" for s in missing if s.header) or "none"
        raise BadRequest(f"provider '{spec.id}' needs {', '.join(s.name for s in missing)} "
                         f"(header {header} or provider settings)")
    return spec.base_url.format(**settings) if spec.requires else spec.base_url
