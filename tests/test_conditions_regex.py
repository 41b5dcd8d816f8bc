"""Conditional routing's ``$regex`` never stalls a worker: patterns that can backtrack badly are refused
with a clear 400 (inline or saved), values past 1,024 characters never match, and safe patterns route."""

from __future__ import annotations

import json
import time

import httpx
import pytest

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def conditional(query: dict) -> dict:
    return {"strategy": {"mode": "conditional", "conditions": [{"query": query, "then": "matched"}], "default": "other"},
            "targets": [{"provider": "@openai-test", "name": "matched"}, {"provider": "@openai-backup", "name": "other"}]}


def call(gateway, config: dict, body: dict = BODY, timeout: float = 20, **headers: str) -> httpx.Response:
    return httpx.post(gateway.v1 + "/chat/completions", json=body, timeout=timeout,
                      headers=gateway.headers(**{"x-portkey-config": json.dumps(config)}, **headers))


REFUSED = {
    "(a+)+$": "nests quantifiers",
    "(x|xy)*z": "repeats an alternation",
    "a*a*a*b": "more than one open repeat",
    "(": "is not a valid regular expression: missing )",
    r"(a)\1": "backreferences",
    "(?<=a)b": "lookarounds",
    "a" * 257: "at most 256 are accepted",
}


@pytest.mark.parametrize("pattern,message", REFUSED.items(), ids=[p[:20] for p in REFUSED])
def test_a_pattern_that_can_backtrack_badly_or_is_invalid_is_a_clear_400(gateway, pattern, message):
    response = call(gateway, conditional({"metadata.user": {"$regex": pattern}}))
    assert response.status_code == 400, response.text
    assert response.headers["x-portkey-gateway-exception"] == "true"
    error = response.json()["error"]["message"]
    assert "config.strategy.conditions[0].query.metadata.user.$regex" in error and message in error, error


def test_a_catastrophic_pattern_never_runs_on_the_event_loop(gateway):
    """(a+)+$ against 30 a's and a b takes minutes of backtracking: refused before it can run."""
    started = time.monotonic()
    response = call(gateway, conditional({"metadata.user": {"$regex": "(a+)+$"}}), timeout=10,
                    **{"x-portkey-metadata": json.dumps({"user": "a" * 30 + "b"})})
    assert response.status_code == 400
    assert time.monotonic() - started < 2


def test_a_saved_config_is_checked_the_same_way(gateway):
    response = httpx.post(gateway.v1 + "/configs", headers=gateway.headers(), timeout=10,
                          json={"name": "evil-regex", "config": conditional({"metadata.user": {"$regex": "(a+)+$"}})})
    assert response.status_code == 400, response.text
    assert "nests quantifiers" in response.json()["error"]["message"]


@pytest.mark.parametrize("pattern", ["-mini$", r"^(\d{1,3}\.){3}\d{1,3}$", "^(pro|team)-[a-z]+$"])
def test_safe_patterns_route(gateway, pattern):
    values = {"-mini$": "gpt-4o-mini", r"^(\d{1,3}\.){3}\d{1,3}$": "10.0.0.1", "^(pro|team)-[a-z]+$": "team-alpha"}
    config = conditional({"metadata.user": {"$regex": pattern}})
    matched = call(gateway, config, **{"x-portkey-metadata": json.dumps({"user": values[pattern]})})
    other = call(gateway, config, **{"x-portkey-metadata": json.dumps({"user": "nothing like it"})})
    assert matched.headers["x-portkey-last-used-option-index"] == "config.targets[0]"
    assert other.headers["x-portkey-last-used-option-index"] == "config.targets[1]"


def test_a_value_longer_than_1024_characters_never_matches(gateway):
    config = conditional({"params.user": {"$regex": "^x"}})
    short = call(gateway, config, body={**BODY, "user": "x" * 1024})
    long = call(gateway, config, body={**BODY, "user": "x" * 1025})
    assert short.headers["x-portkey-last-used-option-index"] == "config.targets[0]"
    assert long.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
