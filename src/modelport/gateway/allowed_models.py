"""A stored provider's ``allowed_models``, held on every route.

The unified route reads the model from the translated body (an audio upload: its form's ``model``
field, read from a held body's head, else refused: ``unified._form_body``); the proxy route asks the provider's spec
where the request names its model (``ProviderSpec.models``: Replicate's model in the path or
``version`` in the body, Gemini's model in the path, the body's ``model`` elsewhere). The path they see
is the one ``paths.normalised_path`` produced, so a spelling of the same route cannot skip the check.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import Forbidden
from .forward import Outbound
from .resolve import Resolved
from .routing import Leaf


def check_model(resolved: Resolved, model: object) -> None:
    """The unified route: the body's ``model``."""
    allowed = resolved.allowed_models
    if allowed is not None and isinstance(model, str) and model not in allowed:
        raise _refused(resolved, model)


def check_proxied_model(leaf: Leaf, outbound: Outbound) -> None:
    """The proxy route: the first of the spec's rules that matches the request decides."""
    resolved = leaf.resolved
    if resolved.allowed_models is None:
        return

    def body() -> Mapping[str, Any] | None:
        if outbound.body is None:
            return None  # streamed: not held, so not readable
        return {**outbound.json.fields(), **leaf.override_params}

    for rule in resolved.spec.models:
        found = rule.match(outbound.method, outbound.path)
        if found is None:
            continue
        model = rule.model(found, body)
        if model is None:
            if rule.required:
                raise Forbidden(
                    f"provider @{resolved.target.slug} allows only some models, and this request does not say which "
                    f"model it runs in a way the gateway can read ({rule.body_field} in a JSON body of at most 4 MiB)"
                )
            return
        if not resolved.allowed_models.intersection(rule.names(model)):
            raise _refused(resolved, model)
        return


def _refused(resolved: Resolved, model: str) -> Forbidden:
    allowed = ", ".join(sorted(resolved.allowed_models or ()))
    return Forbidden(f"model '{model}' is not allowed on provider @{resolved.target.slug}; allowed: {allowed}")
