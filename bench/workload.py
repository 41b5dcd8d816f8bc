"""What the benchmark sends and what the fake upstreams answer.

Every contender gets byte-identical request bodies for a scenario; only the path and headers that
route the request differ (a gateway needs its own headers, direct needs none of them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

UPSTREAM_DIR = Path(__file__).parent / "upstream"

# Provider keys the upstreams expect. Short fakes on purpose: nothing here is a real credential.
OPENAI_KEY = "sk-test-openai"
REPLICATE_KEY = "r8_test_token"

# Two upstream regimes: "fixed" answers in ~0 ms (nginx), "slow" waits 60 ms or streams 2 s (aiohttp).
FIXED = "fixed"
SLOW = "slow"

_PROMPT = (
    "You are a concise assistant. Summarise the following paragraph in one sentence. "
    "Gateways sit between applications and model providers; they authenticate callers, pick a "
    "provider, forward the request, stream the answer back and record what it cost. The time they "
    "add to every request is what this benchmark measures, against calling the provider directly."
)


def _chat_body(model: str, stream: bool) -> bytes:
    body: dict = {
        "model": model,
        "messages": [
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": _PROMPT},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    if stream:
        # Asks for a final usage chunk so gateways can cost a stream (OpenAI's stream_options).
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def _prediction_body() -> bytes:
    body = {
        "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
        "input": {"prompt": _PROMPT, "max_new_tokens": 64},
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Scenario:
    """One request shape against one upstream regime."""

    name: str
    shape: str  # "openai" or "replicate"
    upstream: str  # FIXED or SLOW
    path: str  # below the provider's /v1 base, e.g. "/chat/completions"
    body: bytes
    expect: bytes  # appears in every good response body; a probe checks it before load
    min_seconds: float = 0.0  # a cell shorter than this would complete too few requests

    @property
    def stream(self) -> bool:
        return b'"stream":true' in self.body

    @property
    def provider_key(self) -> str:
        return REPLICATE_KEY if self.shape == "replicate" else OPENAI_KEY

    @property
    def extra_headers(self) -> dict[str, str]:
        # Replicate's sync mode: the fixed answer is a finished prediction, as with `Prefer: wait`.
        return {"Prefer": "wait"} if self.shape == "replicate" else {}


# Model names double as LiteLLM routes (its model_list picks the upstream by the body's model), so
# each regime has its own model; both are priced models so gateways compute a real cost.
MODEL_FIXED = "gpt-4o-mini"
MODEL_SLOW = "gpt-4o"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("openai-0ms", "openai", FIXED, "/chat/completions",
                 _chat_body(MODEL_FIXED, False), b'"chat.completion"'),
        Scenario("replicate-0ms", "replicate", FIXED, "/predictions",
                 _prediction_body(), b'"succeeded"'),
        Scenario("openai-60ms", "openai", SLOW, "/chat/completions",
                 _chat_body(MODEL_SLOW, False), b'"chat.completion"'),
        Scenario("replicate-60ms", "replicate", SLOW, "/predictions",
                 _prediction_body(), b'"succeeded"'),
        Scenario("sse-2s", "openai", SLOW, "/chat/completions",
                 # 9 s: four 2 s streams per connection fit even with some overhead, so req/s
                 # compares equal work (in 8 s only a zero-overhead contender fits a fourth).
                 _chat_body(MODEL_SLOW, True), b"[DONE]", min_seconds=9.0),
    )
}


def fixed_response(shape: str) -> bytes:
    """The upstream's canned JSON for a shape, compact, as served by nginx and the slow upstream."""
    name = "replicate-prediction.json" if shape == "replicate" else "openai-chat.json"
    return json.dumps(json.loads((UPSTREAM_DIR / name).read_text()), separators=(",", ":")).encode()
