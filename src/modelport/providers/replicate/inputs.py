"""OpenAI chat and image requests as the inputs a Replicate model declares (schema.py).

An input the model's schema does not declare is never sent: it is dropped, or, under
``x-portkey-strict-open-ai-compliance: true``, refused with a 400 naming it. What maps, where declared:

    chat                                  Replicate input
    messages                              messages (as sent, system messages included), else
                                          prompt (the template below) + system_prompt (system messages)
    max_completion_tokens / max_tokens    max_tokens, else max_new_tokens
    temperature, top_p, seed,             the same name
    presence_penalty, frequency_penalty
    stop                                  stop, else stop_sequences (comma-joined when it is a string)

    images                                Replicate input
    prompt                                prompt
    n                                     num_outputs, else n predictions
    size ("WxH")                          the nearest aspect_ratio the schema allows, else width + height

The prompt template, for models that take a ``prompt``: a conversation of one user message is that
message's text as it is (such models apply their own chat template); a longer one is one paragraph
per turn, ``User: …``, ``Assistant: …`` (``Tool: …`` for tool results), ending with ``Assistant:``
for the model to continue. System (and developer) messages go to ``system_prompt``, joined by blank
lines; to a model without one, they open the prompt as its first paragraphs.
"""

from __future__ import annotations

import math
from typing import Any

from ..base import UnsupportedParameter
from ..openai_shapes import chat_messages, max_tokens
from .schema import InputSchema

MAX_IMAGES = 10  # OpenAI's own bound on n
_CHAT_ACCEPTED = frozenset({"model", "messages", "stream", "stream_options"})
_SAME_NAME = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
_HARMLESS = {"n": (1,)}  # values that change nothing, accepted even when strict
_IMAGES_ACCEPTED = frozenset({"model", "prompt", "n", "size", "response_format"})
_SYSTEM_ROLES = frozenset({"system", "developer"})
_TURN_NAMES = {"user": "User", "assistant": "Assistant", "tool": "Tool"}


class UndeclaredInput(UnsupportedParameter):
    """A parameter that maps to no input the model declares (raised only under strict compliance)."""

    def __init__(self, parameter: str, schema: InputSchema) -> None:
        ValueError.__init__(self, f"Parameter '{parameter}' maps to no input of Replicate model {schema.model} (its "
                                  f"schema declares: {schema.names()}); leave it out, or send the request without "
                                  "x-portkey-strict-open-ai-compliance to have it dropped.")
        self.parameter, self.provider = parameter, "replicate"


def chat_input(body: dict[str, Any], schema: InputSchema, strict: bool) -> dict[str, Any]:
    messages = chat_messages(body)
    inputs: dict[str, Any] = {}
    sent = set(_CHAT_ACCEPTED)
    if schema.declares("messages"):
        inputs["messages"] = [{"role": m.get("role"), "content": m.get("content")} for m in _checked(messages)]
    elif schema.declares("prompt"):
        system = [_text(m, i, schema) for i, m in enumerate(_checked(messages)) if m.get("role") in _SYSTEM_ROLES]
        turns = [(m.get("role"), _text(m, i, schema)) for i, m in enumerate(messages) if m.get("role") not in _SYSTEM_ROLES]
        if system and schema.declares("system_prompt"):
            inputs["system_prompt"] = "\n\n".join(system)
            system = []
        inputs["prompt"] = render_prompt(system, turns)
    else:
        raise ValueError(f"Replicate model {schema.model} takes neither 'messages' nor 'prompt' (its schema declares: "
                         f"{schema.names()}), so it cannot answer /v1/chat/completions; run it through the proxy route: "
                         f"POST /v1/models/{schema.model}/predictions.")
    limit = max_tokens(body)
    if limit is not None:
        name = next((n for n in ("max_tokens", "max_new_tokens") if schema.declares(n)), None)
        if name is not None:
            inputs[name] = limit
            sent |= {"max_tokens", "max_completion_tokens"}
    for name in _SAME_NAME:
        if body.get(name) is not None and schema.declares(name):
            inputs[name] = body[name]
            sent.add(name)
    stop = body.get("stop")
    if stop:
        stops = [stop] if isinstance(stop, str) else list(stop)
        name = next((n for n in ("stop", "stop_sequences") if schema.declares(n)), None)
        if name is not None:
            inputs[name] = ",".join(stops) if schema.kind(name) == "string" else stops
            sent.add("stop")
    _refuse_undeclared(body, sent, schema, strict)
    return inputs


def render_prompt(system: list[str], turns: list[tuple[str | None, str]]) -> str:
    """The template in the module docstring."""
    if len(turns) == 1 and turns[0][0] == "user":
        return "\n\n".join([*system, turns[0][1]])
    paragraphs = [*system, *(f"{_TURN_NAMES.get(role or '', 'User')}: {text}" for role, text in turns)]
    return "\n\n".join([*paragraphs, "Assistant:"])


def image_input(body: dict[str, Any], schema: InputSchema, strict: bool) -> tuple[dict[str, Any], int]:
    """The input of each prediction, and how many predictions to run."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("'prompt' must be a non-empty string.")
    if not schema.declares("prompt"):
        raise ValueError(f"Replicate model {schema.model} takes no 'prompt' (its schema declares: {schema.names()}), so "
                         f"it cannot answer /v1/images/generations; run it through the proxy route: "
                         f"POST /v1/models/{schema.model}/predictions.")
    if body.get("response_format") not in (None, "url", "b64_json"):
        raise ValueError("'response_format' must be 'url' or 'b64_json'.")
    inputs: dict[str, Any] = {"prompt": prompt}
    sent = set(_IMAGES_ACCEPTED)
    n = body.get("n")
    n = 1 if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
        raise ValueError(f"'n' must be an integer from 1 to {MAX_IMAGES}.")
    predictions = n
    if n > 1 and schema.declares("num_outputs"):
        inputs["num_outputs"], predictions = n, 1
    size = body.get("size")
    if size not in (None, "auto"):
        width, height = _size(size)
        ratios = schema.choices("aspect_ratio") if schema.declares("aspect_ratio") else None
        if ratios:
            inputs["aspect_ratio"] = nearest_ratio(width, height, ratios)
        elif schema.declares("width") and schema.declares("height"):
            inputs["width"], inputs["height"] = width, height
        else:
            sent.discard("size")
    _refuse_undeclared(body, sent, schema, strict)
    return inputs, predictions


def nearest_ratio(width: int, height: int, allowed: list[Any]) -> str:
    """The allowed ``"W:H"`` closest to ``width/height`` on a log scale (so 2:1 and 1:2 are as far from 1:1)."""
    wanted = math.log(width / height)
    ratios = [(abs(math.log(value) - wanted), choice)
              for choice in allowed if isinstance(choice, str) and (value := _ratio(choice))]
    if not ratios:
        raise ValueError("the model's aspect_ratio allows no 'W:H' value to map 'size' to.")
    return min(ratios, key=lambda pair: pair[0])[1]


def _ratio(choice: str) -> float | None:
    w, _, h = choice.partition(":")
    try:
        value = float(w) / float(h)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _size(size: Any) -> tuple[int, int]:
    w, _, h = str(size).partition("x")
    try:
        width, height = int(w), int(h)
    except ValueError:
        width = height = 0
    if width <= 0 or height <= 0:
        raise ValueError(f"'size' must be 'WIDTHxHEIGHT' (such as '1024x1024') or 'auto', got {str(size)[:40]!r}.")
    return width, height


def _refuse_undeclared(body: dict[str, Any], sent: set[str], schema: InputSchema, strict: bool) -> None:
    """Under strict compliance, the first parameter (in the caller's order) that reached no input."""
    if not strict:
        return
    for name, value in body.items():
        if value is None or name in sent or value in _HARMLESS.get(name, ()):
            continue
        raise UndeclaredInput(name, schema)


def _checked(messages: list[Any]) -> list[dict[str, Any]]:
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"messages[{i}] must be an object with a 'role'.")
    return messages


def _text(message: dict[str, Any], i: int, schema: InputSchema) -> str:
    """A message's text: its string content, or its text parts joined."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"messages[{i}] has a '{kind}' part, but Replicate model {schema.model} takes a text "
                                 "prompt; send text only, or use a model whose schema declares 'messages'.")
            texts.append(str(part.get("text") or ""))
        return "".join(texts)
    raise ValueError(f"messages[{i}].content must be a string or a list of parts.")
