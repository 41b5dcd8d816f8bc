"""Tokens, pricing and cost: what a request is recorded as costing, and when it cannot be known."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from modelport.providers.replicate.pricing import (
    DeploymentHardware,
    PredictionRef,
    ReplicatePricer,
    is_terminal,
    prediction_usage,
    ref_from_path,
)
from modelport.usage import (
    Cost,
    PriceBook,
    StreamUsage,
    Usage,
    usage_from_body,
    usage_from_chunks,
    usage_from_sse,
)
from tests.fakes.server import FakeServer

M = 1_000_000


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook.load()


@pytest.fixture(scope="module")
def replicate() -> ReplicatePricer:
    return ReplicatePricer.load()


def write_json(tmp_path, name: str, document: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def sse(*payloads: dict | str) -> bytes:
    return b"".join(f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode() for p in payloads)


# --- token pricing ---------------------------------------------------------------------------


def test_cached_prompt_tokens_are_billed_at_the_cached_rate(book):
    usage = usage_from_body(
        {
            "object": "chat.completion",
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": 200}},
        }
    )
    cost = book.cost("openai", "gpt-4o", usage)
    assert cost.status == "priced"
    assert cost.usd == pytest.approx((800 * 2.5 + 200 * 1.25 + 500 * 10) / M)
    assert "200 cached input tokens" in cost.basis


def test_bedrock_inference_profiles_are_priced_as_their_model(book):
    usage = Usage(input_tokens=1000, output_tokens=500)
    direct = book.cost("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", usage)
    assert direct.status == "priced" and direct.usd == pytest.approx((1000 * 3 + 500 * 15) / M)
    for profile in ("us.anthropic.claude-3-5-sonnet-20241022-v2:0",
                    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-3-5-sonnet-20241022-v2:0"):
        assert book.cost("bedrock", profile, usage).usd == direct.usd
    assert book.cost("bedrock", "us.amazon.nova-pro-v1:0", usage).usd == pytest.approx((1000 * 0.8 + 500 * 3.2) / M)
    assert book.cost("bedrock", "xx.amazon.nova-pro-v1:0", usage).status == "unpriced"  # not a profile prefix


def test_anthropic_cache_reads_and_writes_use_their_own_rates(book):
    usage = usage_from_body(
        {
            "type": "message",
            "usage": {
                "input_tokens": 100,
                "output_tokens": 300,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 2000,
                "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500},
            },
        }
    )
    assert usage.input_tokens == 3100  # every prompt token, as OpenAI counts them
    cost = book.cost("anthropic", "claude-sonnet-4-5-20250929", usage)
    assert cost.usd == pytest.approx((100 * 3 + 1000 * 0.3 + 1500 * 3.75 + 500 * 6 + 300 * 15) / M)


def test_long_prompt_is_billed_at_the_long_context_tier(book):
    short = book.cost("google", "gemini-2.5-pro", Usage(input_tokens=200_000, output_tokens=1000))
    long = book.cost("google", "gemini-2.5-pro", Usage(input_tokens=250_000, output_tokens=1000))
    assert short.usd == pytest.approx((200_000 * 1.25 + 1000 * 10) / M)
    assert long.usd == pytest.approx((250_000 * 2.5 + 1000 * 15) / M)


def test_deepseek_cache_hits_are_cached_tokens(book):
    usage = Usage.from_openai(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 10,
            "prompt_cache_hit_tokens": 600,
            "prompt_cache_miss_tokens": 400,
        }
    )
    assert usage.cached_input_tokens == 600
    assert book.cost("deepseek", "deepseek-chat", usage).usd == pytest.approx(
        (400 * 0.28 + 600 * 0.028 + 10 * 0.42) / M
    )


# --- model name matching ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "requested", "priced_as"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "GPT-4o-Mini-2024-07-18", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("google", "models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("google", "gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("cohere", "command-r-08-2024", "command-r"),
    ],
)
def test_snapshot_and_alias_names_price_as_their_model(book, provider, requested, priced_as):
    match = book.match(provider, requested)
    assert (match.key, match.kind) == (priced_as, "alias")
    cost = book.cost(provider, requested, Usage(input_tokens=10, output_tokens=10))
    assert cost.status == "priced"
    assert cost.usd == book.cost(provider, priced_as, Usage(input_tokens=10, output_tokens=10)).usd


def test_a_snapshot_with_its_own_price_keeps_it(book):
    assert book.price_for("openai", "gpt-4o-2024-05-13").input == 5
    assert book.price_for("openai", "gpt-4o-2024-11-20").input == 2.5


def test_a_variant_priced_by_its_longest_known_prefix_is_estimated(book):
    cost = book.cost("openai", "gpt-4o-mini-search-preview", Usage(input_tokens=1000, output_tokens=100))
    assert book.match("openai", "gpt-4o-mini-search-preview").key == "gpt-4o-mini"
    assert cost.status == "estimated"
    assert "gpt-4o-mini" in cost.reason


def test_a_prefix_never_crosses_into_another_model(tmp_path):
    book = PriceBook.load(write_json(tmp_path, "p.json", {"acme": {"gpt-4": {"input": 30, "output": 60}}}))
    assert book.match("acme", "gpt-4-0613").key == "gpt-4"
    assert book.match("acme", "gpt-4o") is None
    assert book.match("acme", "gpt-4.5-preview") is None


def test_unknown_model_is_unpriced_not_zero(book):
    cost = book.cost("openai", "gpt-9", Usage(input_tokens=100, output_tokens=100))
    assert cost.usd is None
    assert cost.status == "unpriced"
    assert cost.reason == "no price for model openai/gpt-9"
    assert book.cost("no-such-provider", "m", Usage(input_tokens=1)).status == "unpriced"


def test_a_response_without_usage_is_unpriced(book):
    assert usage_from_body({"object": "chat.completion", "choices": []}) is None
    cost = book.cost("openai", "gpt-4o", None)
    assert (cost.usd, cost.status) == (None, "unpriced")
    assert "no usage" in cost.reason


def test_a_quantity_the_table_has_no_rate_for_is_unpriced(book):
    cost = book.cost("openai", "text-embedding-3-small", Usage(input_tokens=100, output_tokens=5))
    assert cost.status == "unpriced"
    assert "output tokens" in cost.reason


def test_a_cost_never_pairs_an_amount_with_unpriced():
    with pytest.raises(ValueError):
        Cost(None, "priced")
    with pytest.raises(ValueError):
        Cost(0.0, "unpriced")


def test_local_ollama_models_are_priced_at_zero(book):
    cost = book.cost("ollama", "llama3.2:3b", None)
    assert (cost.usd, cost.status) == (0.0, "priced")


# --- operator override -------------------------------------------------------------------------


def test_operator_override_wins_entry_by_entry(tmp_path):
    override = write_json(
        tmp_path,
        "prices.json",
        {
            "openai": {"gpt-4o": {"input": 1, "output": 2}, "gpt-4o-mini": None},
            "azure-openai": {"my-deployment": {"input": 3, "output": 4}},
        },
    )
    book = PriceBook.load(override)
    usage = Usage(input_tokens=1000, output_tokens=1000, cached_input_tokens=500)
    # The whole entry is replaced: no shipped cached rate survives, cached tokens pay the input rate.
    assert book.cost("openai", "gpt-4o", usage).usd == pytest.approx((1000 * 1 + 1000 * 2) / M)
    assert book.cost("openai", "gpt-4o-mini", usage).status == "unpriced"
    assert book.cost("openai", "gpt-4.1", usage).usd == pytest.approx((500 * 2 + 500 * 0.5 + 1000 * 8) / M)
    assert book.cost("azure-openai", "my-deployment", usage).usd == pytest.approx(7000 / M)


def test_an_override_with_a_typo_fails_loudly(tmp_path):
    with pytest.raises(ValueError, match="imput"):
        PriceBook.load(write_json(tmp_path, "bad.json", {"openai": {"gpt-4o": {"imput": 1}}}))
    with pytest.raises(ValueError, match="non-negative"):
        PriceBook.load(write_json(tmp_path, "neg.json", {"openai": {"gpt-4o": {"input": -1}}}))


def test_shipped_tables_cover_the_common_providers(book):
    for provider, model in [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-haiku-4-5"),
        ("google", "gemini-2.5-flash"),
        ("mistral-ai", "mistral-large-latest"),
        ("groq", "llama-3.3-70b-versatile"),
        ("together-ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("deepseek", "deepseek-chat"),
        ("fireworks-ai", "accounts/fireworks/models/deepseek-v3"),
        ("cohere", "command-a-03-2025"),
        ("perplexity-ai", "sonar"),
        ("openai", "text-embedding-3-small"),
        ("cohere", "embed-v4.0"),
    ]:
        assert book.price_for(provider, model) is not None, (provider, model)


# --- other billing units ----------------------------------------------------------------------


def test_provider_reported_cost_is_used_as_is(book):
    usage = usage_from_body(
        {
            "usage": {
                "prompt_tokens": 194,
                "completion_tokens": 2,
                "cost": 0.00095,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100},
            }
        }
    )
    assert usage.cache_write_tokens == 100
    cost = book.cost("openrouter", "anthropic/claude-sonnet-4.5", usage)
    assert (cost.usd, cost.status, cost.basis) == (0.00095, "priced", "reported by openrouter")
    without = book.cost("openrouter", "anthropic/claude-sonnet-4.5", Usage(input_tokens=194, output_tokens=2))
    assert without.status == "unpriced"


def test_perplexity_list_price_is_an_estimate_with_its_request_fee(book):
    cost = book.cost("perplexity-ai", "sonar", Usage(input_tokens=1000, output_tokens=1000))
    assert cost.usd == pytest.approx(2000 / M + 0.005)
    assert cost.status == "estimated"
    reported = usage_from_body(
        {"usage": {"prompt_tokens": 10, "completion_tokens": 10, "cost": {"total_cost": 0.0061}}}
    )
    assert book.cost("perplexity-ai", "sonar", reported).usd == 0.0061


def test_rerank_is_billed_per_search_unit(book):
    usage = usage_from_body({"results": [], "meta": {"billed_units": {"search_units": 3}}})
    assert book.cost("cohere", "rerank-v3.5", usage).usd == pytest.approx(0.006)


def test_generated_images_are_billed_per_image(book):
    usage = usage_from_body({"created": 1, "data": [{"url": "https://x/1.png"}, {"url": "https://x/2.png"}]})
    assert usage.images == 2
    cost = book.cost("openai", "dall-e-3", usage)
    assert cost.usd == pytest.approx(0.08)
    assert cost.status == "estimated"  # the table's rate is for standard 1024x1024


def test_transcription_is_billed_per_second_of_audio(book):
    usage = usage_from_body({"text": "hi", "usage": {"type": "duration", "seconds": 90}})
    assert book.cost("openai", "whisper-1", usage).usd == pytest.approx(0.009)


# --- usage from responses and streams ---------------------------------------------------------


def test_responses_api_and_embeddings_usage_shapes():
    responses = usage_from_body(
        {
            "object": "response",
            "usage": {
                "input_tokens": 50,
                "output_tokens": 20,
                "input_tokens_details": {"cached_tokens": 10},
                "output_tokens_details": {"reasoning_tokens": 5},
            },
        }
    )
    assert (responses.input_tokens, responses.cached_input_tokens, responses.extra) == (50, 10, {"reasoning_tokens": 5})
    embeddings = usage_from_body(
        {
            "object": "list",
            "data": [{"object": "embedding", "embedding": [0.1]}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
    )
    assert (embeddings.input_tokens, embeddings.output_tokens, embeddings.images) == (8, 0, 0)
    streamed = usage_from_chunks(
        [
            {"type": "response.output_text.delta", "delta": "usage"},
            {"type": "response.completed", "response": {"usage": {"input_tokens": 5, "output_tokens": 6}}},
        ]
    )
    assert streamed.total_tokens == 11


def test_openai_stream_usage_comes_from_the_last_chunk_that_has_it():
    chunks = [
        {"choices": [{"delta": {"content": "Hi"}}], "usage": None},
        {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": None},
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}},
    ]
    assert usage_from_chunks(chunks).total_tokens == 15
    assert usage_from_chunks(chunks[:2]) is None  # no stream_options.include_usage: unknown, not 0


def test_groq_stream_usage_under_x_groq():
    stream = sse(
        {"choices": [{"delta": {"content": "a"}}]},
        {"choices": [], "x_groq": {"id": "r", "usage": {"prompt_tokens": 7, "completion_tokens": 2}}},
        "[DONE]",
    )
    assert usage_from_sse(stream).total_tokens == 9


def test_anthropic_stream_combines_message_start_and_delta():
    stream = (
        b"event: message_start\ndata: "
        + json.dumps(
            {
                "type": "message_start",
                "message": {"usage": {"input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 100}},
            }
        ).encode()
        + b"\n\n"
        + b'event: content_block_delta\ndata: {"type": "content_block_delta"}\n\n'
        + b"event: message_delta\ndata: "
        + json.dumps({"type": "message_delta", "usage": {"output_tokens": 42}}).encode()
        + b"\n\n"
    )
    usage = usage_from_sse(stream)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (120, 100, 42)


def test_gemini_body_and_stream_count_thinking_as_output():
    body = usage_from_body(
        {
            "candidates": [],
            "usageMetadata": {
                "promptTokenCount": 100,
                "candidatesTokenCount": 10,
                "thoughtsTokenCount": 5,
                "cachedContentTokenCount": 40,
            },
        }
    )
    assert (body.input_tokens, body.output_tokens, body.cached_input_tokens) == (100, 15, 40)
    stream = usage_from_chunks(
        [
            {"usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 1}},
            {"usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 9}},
        ]
    )
    assert stream.output_tokens == 9


def test_cohere_bills_billed_units_in_body_and_stream():
    body = usage_from_body(
        {
            "message": {},
            "usage": {
                "billed_units": {"input_tokens": 5, "output_tokens": 7},
                "tokens": {"input_tokens": 70, "output_tokens": 7},
            },
        }
    )
    assert (body.input_tokens, body.output_tokens) == (5, 7)
    stream = usage_from_chunks(
        [
            {"type": "content-delta"},
            {"type": "message-end", "delta": {"usage": {"billed_units": {"input_tokens": 4, "output_tokens": 2}}}},
        ]
    )
    assert stream.total_tokens == 6
    v1 = usage_from_chunks([{"event_type": "stream-end", "response": {"meta": {"billed_units": {"input_tokens": 3}}}}])
    assert v1.input_tokens == 3


async def test_stream_usage_is_read_as_bytes_arrive_over_a_socket():
    body = sse(
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}},
        },
        "[DONE]",
    )

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for start in range(0, len(body), 13):
            await response.write(body[start : start + 13])
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    server = FakeServer(app).start()
    try:
        reader = StreamUsage()
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{server.url}/v1/chat/completions", json={}) as response,
        ):
            async for piece in response.content.iter_chunked(7):
                reader.feed(piece)
        usage = reader.finish()
    finally:
        server.stop()
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (9, 4, 2)


# --- Replicate ---------------------------------------------------------------------------------


def prediction(status: str = "succeeded", model: str = "someone/community-model", **fields) -> dict:
    return {
        "id": "p1",
        "model": model,
        "version": "a" * 64,
        "status": status,
        "input": {},
        "output": None,
        "metrics": {"predict_time": 3.2},
        **fields,
    }


def test_deployment_hardware_prices_predict_time(replicate):
    usage, cost = replicate.cost(prediction(deployment="acme/prod"), hardware="gpu-a40-large")
    assert cost.usd == pytest.approx(3.2 * 0.000725)
    assert (cost.status, cost.basis) == ("priced", "gpu-a40-large × 3.2 s")
    assert usage.seconds == 3.2


def test_a_mapped_model_is_priced_by_its_hardware(replicate):
    _, cost = replicate.cost(prediction(model="stability-ai/sdxl", metrics={"predict_time": 10}))
    assert (cost.usd, cost.status) == (pytest.approx(10 * 0.000975), "priced")


def test_unknown_hardware_assumes_the_default_and_says_so(replicate):
    _, cost = replicate.cost(prediction())
    assert cost.status == "estimated"
    assert cost.usd == pytest.approx(3.2 * 0.000975)
    assert "assumed the default gpu-l40s" in cost.reason


def test_the_default_hardware_is_a_setting():
    _, cost = ReplicatePricer.load(default_hardware="gpu-t4").cost(prediction())
    assert cost.usd == pytest.approx(3.2 * 0.000225)


def test_official_language_model_is_priced_by_token_counts(replicate):
    usage, cost = replicate.cost(
        prediction(
            model="meta/meta-llama-3.1-405b-instruct",
            version="hidden",
            metrics={"predict_time": 1.1, "input_token_count": 8, "output_token_count": 43},
        )
    )
    # Replicate's billing docs: 8 input + 43 output tokens cost $0.0004845.
    assert cost.usd == pytest.approx(0.0004845)
    assert cost.status == "priced"
    assert (usage.input_tokens, usage.output_tokens) == (8, 43)


def test_official_image_model_is_priced_per_output(replicate):
    outputs = [f"https://replicate.delivery/x/{i}.webp" for i in range(4)]
    usage, cost = replicate.cost(prediction(model="black-forest-labs/flux-schnell", version="hidden", output=outputs))
    assert (cost.usd, usage.images) == (pytest.approx(0.012), 4)


def test_the_requested_model_wins_over_the_returned_one(replicate):
    answered = prediction(
        model="replicate/lifeboat-70b",
        version="dp-a557b7",
        metrics={"predict_time": 2, "input_token_count": 1000, "output_token_count": 1000},
    )
    _, cost = replicate.cost(answered, model="meta/llama-2-70b-chat")
    assert cost.usd == pytest.approx((1000 * 0.65 + 1000 * 2.75) / M)


def test_a_canceled_prediction_is_charged_for_the_time_it_ran(replicate):
    _, cost = replicate.cost(prediction("canceled", model="stability-ai/sdxl", metrics={"predict_time": 1.5}))
    assert cost.usd == pytest.approx(1.5 * 0.000975)


def test_an_aborted_prediction_costs_nothing(replicate):
    _, cost = replicate.cost(prediction("aborted", metrics={}))
    assert (cost.usd, cost.status) == (0.0, "priced")


def test_missing_predict_time_is_unpriced_but_usage_is_kept(replicate):
    usage, cost = replicate.cost(prediction(metrics={"total_time": 4.0}))
    assert (cost.usd, cost.status) == (None, "unpriced")
    assert "predict_time" in cost.reason
    assert usage.extra == {"total_time": 4.0}


def test_an_unfinished_prediction_is_not_priced_yet(replicate):
    _, cost = replicate.cost(prediction("processing", metrics={}))
    assert cost.status == "unpriced"
    assert [s for s in ("starting", "processing", "succeeded", "failed", "canceled", "aborted") if is_terminal(s)] == [
        "succeeded",
        "failed",
        "canceled",
        "aborted",
    ]


def test_an_official_model_without_a_price_entry_is_unpriced(replicate):
    _, cost = replicate.cost(prediction(model="newco/new-official", version="hidden"))
    assert cost.status == "unpriced"
    assert "newco/new-official" in cost.reason
    _, no_counts = replicate.cost(prediction(model="meta/meta-llama-3-8b-instruct", version="hidden"))
    assert no_counts.status == "unpriced"


def test_video_is_priced_per_requested_second_as_an_estimate(replicate):
    usage, cost = replicate.cost(
        prediction(model="google/veo-3", version="hidden", input={"duration": 4}, output="https://x/v.mp4")
    )
    assert (cost.usd, cost.status, usage.extra["output_seconds"]) == (pytest.approx(3.0), "estimated", 4)


def test_replicate_tables_take_an_operator_override(tmp_path):
    override = write_json(
        tmp_path,
        "replicate.json",
        {
            "hardware": {"gpu-a40-large": 0.001, "gpu-b200": 0.004},
            "models": {"someone/community-model": "gpu-b200", "stability-ai/sdxl": None},
            "official": {"black-forest-labs/flux-schnell": {"per_image": 0.01}},
        },
    )
    pricer = ReplicatePricer.load(override)
    assert pricer.cost(prediction())[1].usd == pytest.approx(3.2 * 0.004)
    assert pricer.cost(prediction(model="stability-ai/sdxl"))[1].status == "estimated"
    assert pricer.cost(prediction(deployment="a/b"), hardware="gpu-a40-large")[1].usd == pytest.approx(0.0032)
    with pytest.raises(ValueError, match="default_hardware"):
        ReplicatePricer.load(default_hardware="gpu-nonexistent")


def test_model_and_deployment_are_read_from_the_request_path():
    assert ref_from_path("/v1/models/meta/meta-llama-3-8b-instruct/predictions") == PredictionRef(
        model="meta/meta-llama-3-8b-instruct"
    )
    assert ref_from_path("/deployments/acme/prod/predictions?x=1") == PredictionRef(deployment="acme/prod")
    assert ref_from_path("/v1/predictions", {"version": "acme/model:" + "b" * 64}) == PredictionRef(
        model="acme/model", version="b" * 64
    )
    assert ref_from_path("/v1/predictions", {"version": "c" * 64}) == PredictionRef(version="c" * 64)
    assert ref_from_path("/v1/predictions/abc/cancel") is None


def test_deployment_hardware_is_cached_until_it_expires():
    now = [100.0]
    cache = DeploymentHardware(ttl=60, clock=lambda: now[0])
    deployment = {
        "owner": "acme",
        "name": "prod",
        "current_release": {
            "number": 3,
            "configuration": {"hardware": "gpu-t4", "min_instances": 0, "max_instances": 1},
        },
    }
    assert cache.remember(deployment) == "gpu-t4"
    assert cache.get("acme/prod") == "gpu-t4"
    now[0] += 61
    assert cache.get("acme/prod") is None


def test_usage_of_a_prediction_is_recorded_without_a_price():
    usage = prediction_usage(
        {
            "status": "succeeded",
            "metrics": {"predict_time": 2.5, "total_time": 3.0, "input_token_count": 11, "output_token_count": 22},
        }
    )
    assert usage.to_dict() | {"extra": None} == {
        "input_tokens": 11,
        "output_tokens": 22,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "images": 0,
        "seconds": 2.5,
        "characters": 0,
        "requests": 1,
        "reported_usd": None,
        "extra": None,
    }
