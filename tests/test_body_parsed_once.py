"""A request's JSON body is decoded at most once, whatever the route: every step that reads it (routing,
the ``@slug/model`` route, allow-lists, the unified translation, the cache key, budgets, a provider's
policy) asks the request's one ``BodyJson``, and no module decodes the client's body bytes itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import modelport
from modelport.body_json import BodyJson

SOURCES = Path(modelport.__file__).parent
DECODERS = frozenset({"loads", "json_or_none"})  # orjson.loads, json.loads, providers/replicate's json_or_none
# How the client's body is reached where it is held: the pipeline's Outbound and the policy's Exchange.
REQUEST_BODIES = ("outbound.body", "exchange.body")


def own_decodes(source: str) -> list[str]:
    """Each call in ``source`` that decodes the client's request body itself instead of asking its BodyJson."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in DECODERS:
            continue
        argument = " ".join(ast.unparse(arg) for arg in node.args)
        if any(body in argument for body in REQUEST_BODIES):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_decodes_the_request_body_but_body_json() -> None:
    leaks = {str(path.relative_to(SOURCES)): own_decodes(path.read_text())
             for path in SOURCES.rglob("*.py") if path.name != "body_json.py"}
    assert {path: found for path, found in leaks.items() if found} == {}


def test_the_check_finds_a_step_that_decodes_the_body_itself() -> None:
    assert own_decodes("value = orjson.loads(self.outbound.body or b'')\n")
    assert own_decodes("request = json_or_none(exchange.body)\n")
    assert not own_decodes("request = exchange.body_json.or_none()\n")


def test_every_reader_gets_the_one_decoded_value() -> None:
    body = BodyJson(b'{"model": "gpt-4o-mini", "messages": []}')
    first = body.value()
    assert body.value() is first and body.or_none() is first and body.fields() is first


def test_a_body_that_is_not_json_is_refused_by_the_strict_reader_and_empty_to_the_others() -> None:
    body = BodyJson(b"{not json")
    with pytest.raises(ValueError, match="."):
        body.value()
    assert body.or_none() is None and body.fields() == {}
    assert BodyJson(b"[1, 2]").fields() == {}  # JSON, but not an object
    assert BodyJson(b"").fields() == {}


def test_a_streamed_body_is_not_readable() -> None:
    body = BodyJson(None)
    with pytest.raises(ValueError, match="streamed"):
        body.value()
    assert body.or_none() is None and body.fields() == {}
