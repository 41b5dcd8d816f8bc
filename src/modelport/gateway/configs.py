"""``x-portkey-config`` (inline JSON or a saved config id) → a validated routing tree.

Validation is strict where Portkey is silent: an unknown key, a wrong type, weights that are all
zero or a ``then`` naming no target is a 400 that names the path, e.g.
``config.targets[1].retry.attempts must be an integer from 0 to 10``. Keys are Portkey's
(research/portkey.md §2.1); ``use_retry_after_headers`` (the docs' spelling) is accepted too.
Units: ``request_timeout`` in milliseconds, ``cache.max_age`` in seconds (as Portkey documents).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import orjson

from ..providers.registry import setting_config_keys
from .auth import Principal
from .conditions import regex_problem
from ..errors import InvalidConfig, quoted
from .headers import MAX_TIMEOUT_MS, RequestOptions
from .resolve import TargetResolver
from .routing import DEFAULT_RETRY_CODES, Branch, CachePolicy, Leaf, Node, RetryPolicy, Sticky
from .store_cache import StoreCache, StoreVersion

if TYPE_CHECKING:
    from ..store.base import Store

MODES = ("single", "fallback", "loadbalance", "conditional")
# Validation, planning and the JSON encoder of request bodies (override_params) recurse: a config
# nested a few hundred levels deep was a 500. 32 levels leave room for 15 nested strategies.
CONFIG_MAX_DEPTH = 32
_INHERITED = ("retry", "request_timeout", "override_params", "custom_host", "forward_headers", "cache",
              "strict_open_ai_compliance")
# Spellings of provider settings in a target (``resource_name``, ``azure_resource_name``, ``resourceName``),
# from each provider's declarations (providers/registry.py).
_PROVIDER_SETTINGS = setting_config_keys()
_LEAF_KEYS = frozenset({"provider", "api_key", "virtual_key", "name", "weight", *_INHERITED, *_PROVIDER_SETTINGS})
_BRANCH_KEYS = frozenset({"strategy", "targets", "name", "weight", "id", *_INHERITED})
_CONDITION_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex", "$and", "$or"})


class ConfigPlanner:
    """Plans are cached per (gateway key, routing headers): a tree depends on nothing else, and the cache
    empties whenever the store changes (a provider edited, a key revoked, a config saved), so a repeat
    request skips config parsing, validation and target resolution (~15 µs of the request path)."""

    def __init__(self, store: "Store", resolver: TargetResolver, version: StoreVersion) -> None:
        self._resolver = resolver
        self._saved: StoreCache[Any] = StoreCache(version, store.get_config)
        self._default: StoreCache[Any] = StoreCache(version, lambda _: store.get_default_config(), max_entries=1)
        # Keyed by raw header values (an inline config, a caller's provider key): bounded in bytes too, and
        # a config of more than 8 KB is planned again on each request rather than kept.
        self._plans: StoreCache[Node] = StoreCache(version, lambda key: None, max_entries=4096,  # type: ignore[arg-type,return-value]
                                                   max_key_bytes=8 * 1024, max_bytes=2 * 1024 * 1024)

    def plan(self, options: RequestOptions, principal: Principal, model_route: tuple[str, str] | None = None) -> Node:
        """``model_route`` is ``(slug, model)`` from a body's ``"model": "@slug/model"`` (Portkey 2.x), used
        when the headers choose no provider, virtual key or config."""
        settings = tuple(sorted(options.provider_settings.items())) if options.provider_settings else ()
        texts = (options.provider, options.virtual_key, options.config, options.custom_host, options.provider_key)
        size = (len(options.provider or "") + len(options.virtual_key or "") + len(options.config or "")
                + len(options.custom_host or "") + len(options.provider_key or ""))  # no generator: every request
        if settings or options.forward_headers or model_route:
            size += sum(len(value) for _, value in settings) + sum(map(len, options.forward_headers))
            size += sum(map(len, model_route or ()))  # a body's model: the caller's text too
        key = (principal.key_id, *texts, settings, options.forward_headers, model_route)
        return self._plans.get(key, lambda: self._build(options, principal, model_route), size)

    def _build(self, options: RequestOptions, principal: Principal, model_route: tuple[str, str] | None) -> Node:
        builder = _Builder(self._resolver, options, principal)
        if model_route is not None and not options.config:
            slug, model = model_route  # the one target the body names, its model sent without the prefix
            return builder.node({"provider": f"@{slug}", "override_params": {"model": model}}, "", {})
        config = self._config(options.config) if options.config else self._default_config()
        if config is None:
            # No config applies: the one target is the request's own provider, and it has no option index
            # to report (Portkey sends x-portkey-last-used-option-index only when a config routed).
            return builder.node({}, "", {})
        return builder.node(config, "config", {})

    def _default_config(self) -> dict[str, Any] | None:
        """The saved config marked default applies to every request that names none (Portkey's default
        config); an archived one never routes."""
        record = self._default.get(None)
        if record is None or record.status != "active":
            return None
        validate_config(record.config)
        return dict(record.config)

    def _config(self, raw: str) -> dict[str, Any]:
        text = raw.strip()
        if text.startswith(("{", "[")):
            try:
                config = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise InvalidConfig(f"x-portkey-config is not valid JSON: {exc}") from None
            if not isinstance(config, dict):
                raise InvalidConfig("x-portkey-config must be a JSON object or the id or slug of a saved config")
        else:
            record = self._saved.get(text, size=len(text))
            if record is None:
                raise InvalidConfig(f"x-portkey-config names no saved config {quoted(text)} (create one with POST /v1/configs)")
            if record.status != "active":
                raise InvalidConfig(f"saved config {quoted(text)} is {record.status}; make it active again "
                                    f"(PUT /v1/configs/{record.slug} with status \"active\") or name another")
            config = record.config
        validate_config(config)
        return config


def validate_config(config: Any) -> None:
    """Check a config's shape without resolving providers (used on save, too)."""
    if _deeper_than(config, CONFIG_MAX_DEPTH):
        _fail("config", f"nests deeper than {CONFIG_MAX_DEPTH} levels of objects and lists")
    _check_node(config, "config")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests deeper than ``limit``; without recursion, as it may be 1,000 deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class _Builder:
    def __init__(self, resolver: TargetResolver, options: RequestOptions, principal: Principal) -> None:
        self.resolver, self.options, self.principal = resolver, options, principal

    def node(self, config: Mapping[str, Any], index: str, inherited: Mapping[str, Any]) -> Node:
        settings = {**inherited, **{k: config[k] for k in _INHERITED if k in config}}
        if "override_params" in inherited and "override_params" in config:
            settings["override_params"] = {**inherited["override_params"], **config["override_params"]}
        if "targets" in config:
            strategy = config.get("strategy", {"mode": "single"})
            children = tuple(self.node(t, f"{index}.targets[{i}]", settings) for i, t in enumerate(config["targets"]))
            codes = strategy.get("on_status_codes")
            return Branch(
                index=index, mode=strategy["mode"], children=children,
                on_status_codes=frozenset(codes) if codes is not None else None,
                conditions=tuple((c["query"], c["then"]) for c in strategy.get("conditions", ())),
                default=strategy.get("default"), weight=float(config.get("weight", 1)), name=config.get("name"),
                sticky=_sticky(strategy.get("sticky")),
            )
        return self.leaf(config, index, settings)

    def leaf(self, config: Mapping[str, Any], index: str, settings: Mapping[str, Any]) -> Leaf:
        options = self.options
        provider = config.get("provider") or (None if config.get("virtual_key") else options.provider)
        virtual_key = config.get("virtual_key") or (options.virtual_key if not config.get("provider") else None)
        caller_settings = {**options.provider_settings, **_provider_settings(config)}
        custom_host = settings.get("custom_host") or options.custom_host
        resolved = self.resolver.resolve(
            self.principal, provider=provider, virtual_key=virtual_key, custom_host=custom_host,
            caller_key=config.get("api_key") or options.provider_key, caller_settings=caller_settings,
        )
        return Leaf(
            index=index,
            resolved=resolved,
            retry=_retry(settings.get("retry")),
            timeout=settings["request_timeout"] / 1000 if settings.get("request_timeout") else None,
            override_params=dict(settings.get("override_params") or {}),
            forward_headers=options.forward_headers | frozenset(h.lower().encode() for h in settings.get("forward_headers") or ()),
            cache=_cache(settings.get("cache")),
            weight=float(config.get("weight", 1)),
            name=config.get("name"),
        )


def _provider_settings(config: Mapping[str, Any]) -> dict[str, str]:
    found = {}
    for key, value in config.items():
        name = _PROVIDER_SETTINGS.get(key)
        # An alias (azure_resource_name) wins over the plain name, as before declarations.
        if name is not None and value and (key != name or name not in found):
            found[name] = value
    return found


def _sticky(raw: Mapping[str, Any] | None) -> Sticky | None:
    if not raw or not raw.get("enabled", True):
        return None
    return Sticky(tuple(raw["hash_fields"]), float(raw["ttl"]) if raw.get("ttl") else None)


def _retry(raw: Mapping[str, Any] | None) -> RetryPolicy:
    if not raw:
        return RetryPolicy()
    codes = raw.get("on_status_codes")
    return RetryPolicy(
        attempts=int(raw.get("attempts", 0)),
        on_status_codes=frozenset(codes) if codes else DEFAULT_RETRY_CODES,
        use_retry_after_header=bool(raw.get("use_retry_after_header", raw.get("use_retry_after_headers", True))),
    )


def _cache(raw: Mapping[str, Any] | None) -> CachePolicy | None:
    if not raw:
        return None
    return CachePolicy(mode=raw.get("mode", "simple"), max_age=float(raw["max_age"]) if raw.get("max_age") is not None else None)


# ---- validation -----------------------------------------------------------------------------------------

def _fail(path: str, message: str) -> None:
    raise InvalidConfig(f"{path} {message}")


def _check_node(config: Any, path: str) -> None:
    if not isinstance(config, dict):
        _fail(path, "must be a JSON object")
    if "options" in config:
        _fail(path, "uses the legacy 'options' format; use 'strategy' and 'targets'")
    is_branch = "targets" in config or "strategy" in config
    allowed = _BRANCH_KEYS if is_branch else _LEAF_KEYS
    unknown = sorted(set(config) - allowed)
    if unknown:
        _fail(path, f"has unknown key(s) {', '.join(repr(k) for k in unknown)}")
    _check_shared(config, path)
    if is_branch:
        _check_branch(config, path)
    else:
        for key in ("provider", "api_key", "virtual_key", "name"):
            if key in config and not isinstance(config[key], str):
                _fail(f"{path}.{key}", "must be a string")


def _check_branch(config: dict[str, Any], path: str) -> None:
    strategy, targets = config.get("strategy"), config.get("targets")
    if not isinstance(strategy, dict) or strategy.get("mode") not in MODES:
        _fail(f"{path}.strategy.mode", f"must be one of {', '.join(MODES)}")
    unknown = sorted(set(strategy) - {"mode", "on_status_codes", "conditions", "default", "sticky"})
    if unknown:
        _fail(f"{path}.strategy", f"has unknown key(s) {', '.join(repr(k) for k in unknown)}")
    if "sticky" in strategy:
        _check_sticky(strategy, f"{path}.strategy.sticky")
    if not isinstance(targets, list) or not targets:
        _fail(f"{path}.targets", "must be a non-empty list")
    for i, target in enumerate(targets):
        _check_node(target, f"{path}.targets[{i}]")
    if "on_status_codes" in strategy:
        _check_codes(strategy["on_status_codes"], f"{path}.strategy.on_status_codes")
    if strategy["mode"] == "loadbalance" and not any(float(t.get("weight", 1)) > 0 for t in targets):
        _fail(f"{path}.targets", "all have weight 0: a loadbalance needs at least one positive weight")
    if strategy["mode"] == "conditional":
        _check_conditions(strategy, targets, path)


_STICKY_SOURCES = ("metadata.", "params.", "headers.")


def _check_sticky(strategy: dict[str, Any], path: str) -> None:
    sticky = strategy["sticky"]
    if strategy["mode"] != "loadbalance":
        _fail(path, "applies to the loadbalance mode only")
    if not isinstance(sticky, dict) or set(sticky) - {"enabled", "hash_fields", "ttl"}:
        _fail(path, "must be an object with hash_fields and optional enabled and ttl")
    if not isinstance(sticky.get("enabled", True), bool):
        _fail(f"{path}.enabled", "must be true or false")
    fields = sticky.get("hash_fields")
    if (not isinstance(fields, list) or not fields
            or not all(isinstance(f, str) and f.startswith(_STICKY_SOURCES) and f not in _STICKY_SOURCES for f in fields)):
        _fail(f"{path}.hash_fields", "must be a non-empty list of metadata.<key>, params.<field> or headers.<name>")
    ttl = sticky.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= 31_536_000):
        _fail(f"{path}.ttl", "must be a number of seconds between 1 and 31536000")


def _check_conditions(strategy: dict[str, Any], targets: list[Any], path: str) -> None:
    names = {t.get("name") for t in targets if t.get("name")}
    conditions = strategy.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        _fail(f"{path}.strategy.conditions", "must be a non-empty list of {query, then}")
    for i, condition in enumerate(conditions):
        where = f"{path}.strategy.conditions[{i}]"
        if not isinstance(condition, dict) or not isinstance(condition.get("query"), dict) or "then" not in condition:
            _fail(where, "must be an object with 'query' (object) and 'then' (a target name)")
        if condition["then"] not in names:
            _fail(f"{where}.then", f"names no target ('{condition['then']}'; targets are named {sorted(names)})")
        _check_query(condition["query"], f"{where}.query")
    if "default" in strategy and strategy["default"] not in names:
        _fail(f"{path}.strategy.default", f"names no target ('{strategy['default']}')")


def _check_query(query: dict[str, Any], path: str) -> None:
    for key, value in query.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list):
                _fail(f"{path}.{key}", "must be a list of queries")
            for i, sub in enumerate(value):
                _check_query(sub, f"{path}.{key}[{i}]")
        elif key.startswith("$"):
            _fail(path, f"has unknown operator {quoted(key)}")
        elif not key.startswith(("metadata.", "params.", "url.")):
            _fail(f"{path}.{key}", "must start with 'metadata.', 'params.' or 'url.'")
        elif isinstance(value, dict):
            bad = sorted(set(value) - _CONDITION_OPERATORS)
            if bad:
                _fail(f"{path}.{key}", f"has unknown operator(s) {bad}")
            problem = regex_problem(value["$regex"]) if "$regex" in value else None
            if problem is not None:
                _fail(f"{path}.{key}.$regex", problem)


def _check_shared(config: dict[str, Any], path: str) -> None:
    retry = config.get("retry")
    if retry is not None:
        if not isinstance(retry, dict):
            _fail(f"{path}.retry", "must be an object like {\"attempts\": 3}")
        unknown = sorted(set(retry) - {"attempts", "on_status_codes", "use_retry_after_header", "use_retry_after_headers"})
        if unknown:
            _fail(f"{path}.retry", f"has unknown key(s) {', '.join(repr(k) for k in unknown)}")
        attempts = retry.get("attempts", 0)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or not 0 <= attempts <= 10:
            _fail(f"{path}.retry.attempts", "must be an integer from 0 to 10")
        if "on_status_codes" in retry:
            _check_codes(retry["on_status_codes"], f"{path}.retry.on_status_codes")
    if "request_timeout" in config:
        value = config["request_timeout"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= MAX_TIMEOUT_MS:
            _fail(f"{path}.request_timeout", f"must be a positive number of milliseconds, at most {MAX_TIMEOUT_MS:,} (a day)")
    if "weight" in config:
        value = config["weight"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            _fail(f"{path}.weight", "must be a number >= 0")
    if "override_params" in config and not isinstance(config["override_params"], dict):
        _fail(f"{path}.override_params", "must be an object")
    if "forward_headers" in config and not (
        isinstance(config["forward_headers"], list) and all(isinstance(h, str) for h in config["forward_headers"])
    ):
        _fail(f"{path}.forward_headers", "must be a list of header names")
    if "custom_host" in config and not isinstance(config["custom_host"], str):
        _fail(f"{path}.custom_host", "must be a URL string")
    cache = config.get("cache")
    if cache is not None:
        if not isinstance(cache, dict) or cache.get("mode", "simple") not in ("simple", "semantic"):
            _fail(f"{path}.cache", "must be an object like {\"mode\": \"simple\", \"max_age\": 3600}")
        if cache.get("mode") == "semantic":
            _fail(f"{path}.cache.mode", "'semantic' is not supported; use 'simple' (exact match)")
        unknown = sorted(set(cache) - {"mode", "max_age"})
        if unknown:
            _fail(f"{path}.cache", f"has unknown key(s) {', '.join(repr(k) for k in unknown)}")
        max_age = cache.get("max_age")
        if max_age is not None and (not isinstance(max_age, (int, float)) or isinstance(max_age, bool) or max_age <= 0):
            _fail(f"{path}.cache.max_age", "must be a positive number of seconds")


def _check_codes(codes: Any, path: str) -> None:
    if not isinstance(codes, list) or not all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
        _fail(path, "must be a list of HTTP status codes (integers 100-599)")
