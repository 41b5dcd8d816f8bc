"""OpenAI-compatible chat and images over Replicate models: a multi-step adapter (providers/base.py).

    chat    (1) read the model's input schema (schema.py, cached)
            (2) create a prediction with the inputs it declares (inputs.py):
                POST /models/{owner}/{name}/predictions, or POST /predictions with ``version``
            (3) ``stream: true``: read ``urls.stream`` (SSE) and relay each ``output`` event as a
                ``chat.completion.chunk`` as it arrives; then GET the prediction for its token counts
                otherwise: the create waits (``Prefer: wait``), then GET ``/predictions/{id}`` every
                ``POLL_INTERVAL`` until it ends, within the request's deadline
    images  (1) and (2) as chat, once (``num_outputs``) or n times; (3) poll them all to the end;
            ``b64_json`` fetches each output URL (without the credential, SSRF-guarded)

Usage is the finished prediction's ``metrics.input_token_count``/``output_token_count``. A prediction that
fails is a 502 ``prediction_failed`` with Replicate's error; Replicate's own 4xx keeps its status. Every
prediction is handed to ``steps.saw``: the log service prices it once, as on the proxy route. A client
that leaves before the end (a closed stream, a timed-out poll) has the prediction canceled (``abandon``).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from contextlib import aclosing
from typing import Any, AsyncIterator

import orjson

from ...errors import BadUpstreamResponse, GatewayError, UpstreamTimeout
from ...sse import MAX_EVENT_BYTES, SSEParser
from .pricing import is_terminal
from ..base import Endpoint, ProviderFailure, Reply, StepAnswer, StepRefused, Steps, Target, UpstreamRequest
from ..openai_shapes import (
    ChunkStream,
    choice,
    completion,
    completion_id,
    error_type,
    include_usage,
    json_value,
    openai_error,
    raw_error_message,
    token_usage,
)
from .inputs import chat_input, image_input
from .schema import InputSchema, ModelRef, SchemaCache

POLL_INTERVAL = 0.5  # seconds between polls, as replicate-python's default (REPLICATE_POLL_INTERVAL)
MAX_WAIT = 60  # Replicate holds a create at most this long (Prefer: wait=1..60, research/replicate.md §2.2)
PREDICTION_LIMIT = 8 * 1024 * 1024  # a prediction's JSON, output included
IMAGE_LIMIT = 16 * 1024 * 1024  # one output fetched for b64_json (a 2048² PNG is ~6 MB)
_JSON = {"content-type": "application/json", "accept": "application/json"}


class ReplicateUnified:
    """Chat and images over Replicate models, in several steps each."""

    multi_step = True

    def __init__(self) -> None:
        self.schemas = SchemaCache()

    # -- the multi-step contract -----------------------------------------------------------------

    async def begin(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool,
                    steps: Steps) -> StepAnswer:
        ref = ModelRef.parse(body.get("model"))
        schema = await self.schemas.read(ref, target, steps)
        if isinstance(schema, StepAnswer):  # Replicate refused the model (404): that is the answer
            return schema
        inputs, _ = self._inputs(endpoint, body, schema, strict)
        return await self._create(ref, inputs, bool(body.get("stream")) and endpoint == "chat", target, steps)

    async def finish(self, endpoint: Endpoint, first: StepAnswer, body: dict[str, Any], target: Target,
                     steps: Steps) -> Reply:
        prediction = _prediction(first)
        if endpoint == "images":
            return await self._images(prediction, body, target, steps)
        if body.get("stream"):
            reply = Reply(200)
            reply.stream = self._chat_stream(prediction, body, target, steps, reply)
            return reply
        final = _ended_well(await _until_ended(prediction, target, steps))
        usage = _usage(final)
        answer = completion(completion_id(final["id"]), body.get("model"), [choice(_text(final.get("output")), [], "stop")],
                            usage or token_usage(0, 0))
        return Reply(200, orjson.dumps(answer), usage=usage)

    async def abandon(self, first: StepAnswer, target: Target, steps: Steps) -> None:
        """The client left: cancel the predictions still running (Replicate bills a canceled run for the
        time it ran only). A cancel goes through the policy as a caller's would; its answer is seen once more."""
        running = [p["id"] for p in steps.seen() if not is_terminal(p.get("status"))]
        answers = await asyncio.gather(*(steps.fetch(UpstreamRequest(
            "POST", f"{target.base_url}/predictions/{prediction_id}/cancel", {"accept": "application/json"}, None),
            PREDICTION_LIMIT) for prediction_id in running))
        for answer in answers:
            if answer.status == 200:
                steps.saw(_prediction(answer))

    def error_body(self, status: int, body: bytes) -> dict[str, Any]:
        """Replicate's problem+json (``{"title", "detail", "status"}``) in OpenAI's shape, its detail the message."""
        data = json_value(body)
        detail = data.get("detail") if isinstance(data, dict) else None
        title = data.get("title") if isinstance(data, dict) else None
        if isinstance(detail, str) and detail.strip():
            message = f"Replicate: {title + ': ' if isinstance(title, str) and title else ''}{detail.strip()}"
        else:
            message = raw_error_message(status, body, "Replicate")
        code = re.sub(r"\W+", "_", title.strip().lower()) if isinstance(title, str) and title.strip() else None
        return openai_error(message, error_type(status), code)

    # The single-request half of the adapter contract: never called for a multi-step adapter.
    def build_request(self, endpoint: Endpoint, body: dict[str, Any], target: Target, strict: bool) -> UpstreamRequest:
        raise ValueError("Replicate's unified API runs in steps (begin/finish)")

    def parse_response(self, endpoint: Endpoint, status: int, body: bytes, request_body: dict[str, Any]) -> bytes:
        raise ValueError("Replicate's unified API runs in steps (begin/finish)")

    def stream_translator(self, endpoint: Endpoint, request_body: dict[str, Any]) -> Any:
        raise ValueError("Replicate's unified API runs in steps (begin/finish)")

    # -- steps -----------------------------------------------------------------------------------

    def _inputs(self, endpoint: Endpoint, body: dict[str, Any], schema: InputSchema, strict: bool) -> tuple[dict[str, Any], int]:
        if endpoint == "chat":
            return chat_input(body, schema, strict), 1
        if endpoint == "images":
            return image_input(body, schema, strict)
        raise ValueError(f"Replicate's unified API serves chat and images, not {endpoint}.")

    async def _create(self, ref: ModelRef, inputs: dict[str, Any], stream: bool, target: Target, steps: Steps) -> StepAnswer:
        headers = dict(_JSON)
        payload: dict[str, Any] = {"input": inputs}
        if stream:
            payload["stream"] = True  # deprecated but still honoured; streaming models always give urls.stream
        else:
            headers["prefer"] = f"wait={max(1, min(MAX_WAIT, int(steps.remaining())))}"
        if ref.version is None:
            url = f"{target.base_url}/models/{ref.owner}/{ref.name}/predictions"
        else:
            url, payload["version"] = f"{target.base_url}/predictions", ref.version
        answer = await steps.fetch(UpstreamRequest("POST", url, headers, orjson.dumps(payload)), PREDICTION_LIMIT)
        if 200 <= answer.status < 300:
            steps.saw(_prediction(answer))
        return answer

    async def _images(self, first: dict[str, Any], body: dict[str, Any], target: Target, steps: Steps) -> Reply:
        ref = ModelRef.parse(body.get("model"))
        schema = await self.schemas.read(ref, target, steps)  # cached by begin
        assert isinstance(schema, InputSchema)
        inputs, count = image_input(body, schema, False)
        created = [first]
        for _ in range(count - 1):  # no num_outputs: one prediction per image
            answer = await self._create(ref, inputs, False, target, steps)
            if not 200 <= answer.status < 300:
                raise ProviderFailure(answer.status, self.error_body(answer.status, answer.body))
            created.append(_prediction(answer))
        finals = await asyncio.gather(*(_until_ended(p, target, steps) for p in created))
        urls = [url for final in finals for url in _urls(_ended_well(final))]
        if body.get("response_format") == "b64_json":
            data = [{"b64_json": await _encoded(url, i, steps)} for i, url in enumerate(urls)]
        else:
            data = [{"url": url} for url in urls]  # delivery URLs untouched: they need no credential
        return Reply(200, orjson.dumps({"created": int(time.time()), "data": data}))

    async def _chat_stream(self, prediction: dict[str, Any], body: dict[str, Any], target: Target, steps: Steps,
                           reply: Reply) -> AsyncIterator[bytes]:
        chunks = PredictionChunks(body.get("model"), include_usage(body), completion_id(prediction["id"]))
        stream_url = (prediction.get("urls") or {}).get("stream")
        failure = None
        if isinstance(stream_url, str):
            async with aclosing(_outputs(stream_url, steps)) as outputs:
                async for kind, data in outputs:
                    if kind == "output":
                        if data:
                            yield chunks.text(data)
                    elif kind == "error":
                        failure = f"Replicate prediction {prediction['id']} failed: {data}"
                    else:
                        failure = f"Replicate would not open the stream of prediction {prediction['id']} ({data})"
        try:  # its end, for the usage chunk and for pricing (a failed run is billed for the time it ran)
            final = await _until_ended(prediction, target, steps)
        except ProviderFailure as refused:
            final, failure = prediction, failure or str(refused.body["error"]["message"])
        except GatewayError as error:  # the deadline, a broken connection: said in the stream, which has begun
            final, failure = prediction, failure or error.message
        if failure is None and final.get("status") != "succeeded":
            failure = _failure_message(final)
        if failure is None and not isinstance(stream_url, str):  # a model that does not stream: its output at once
            yield chunks.text(_text(final.get("output")))
        if failure is not None:
            reply.error = failure
            yield chunks.fail(openai_error(failure, "server_error", "prediction_failed"))
        else:
            chunks.usage = reply.usage = _usage(final)
            yield chunks.stop()
        yield chunks.close()


class PredictionChunks(ChunkStream):
    """OpenAI chunks built from a prediction's output events (text, not JSON, so nothing is parsed here)."""

    def _translate(self, data: dict[str, Any]) -> bytes:  # pragma: no cover - events come through text()
        return b""

    def text(self, text: str) -> bytes:
        return self._delta({"content": text}) if text else b""

    def stop(self) -> bytes:
        return self._delta({}, "stop")

    def fail(self, error: dict[str, Any]) -> bytes:
        return self._fail(error)

    def close(self) -> bytes:
        return self._close()


async def _outputs(url: str, steps: Steps) -> AsyncIterator[tuple[str, str]]:
    """A prediction's SSE stream as ("output", text) as each arrives, ("error", message), or ("refused", why);
    it stops at ``done``."""
    parser = SSEParser(MAX_EVENT_BYTES)
    request = UpstreamRequest("GET", url, {"accept": "text/event-stream", "cache-control": "no-store"}, None)
    try:
        async for chunk in steps.stream(request):
            for event in parser.feed(chunk):
                if event.event == "output":
                    yield "output", event.data
                elif event.event == "error":
                    detail = json_value(event.data)
                    yield "error", str(detail.get("detail") if isinstance(detail, dict) else event.data)
                    return
                elif event.event == "done":
                    return
    except StepRefused as refused:
        yield "refused", f"HTTP {refused.answer.status}"


async def _until_ended(prediction: dict[str, Any], target: Target, steps: Steps) -> dict[str, Any]:
    """Poll until the prediction ends, the first time at once (a create that waited, or a stream that
    sent ``done``, has usually just ended); past the deadline, a 504 that says where to poll it."""
    polls = 0
    while not is_terminal(prediction.get("status")):
        if steps.remaining() <= (POLL_INTERVAL if polls else 0.0):
            raise UpstreamTimeout(f"Replicate prediction {prediction['id']} is still {prediction.get('status')} at the "
                                  "request's deadline (x-portkey-request-timeout / request_timeout); it keeps running: "
                                  f"poll it at /v1/predictions/{prediction['id']} through the proxy route",
                                  code="prediction_timeout")
        if polls:
            await asyncio.sleep(POLL_INTERVAL)
        polls += 1
        answer = await steps.fetch(UpstreamRequest("GET", f"{target.base_url}/predictions/{prediction['id']}",
                                                   {"accept": "application/json"}, None), PREDICTION_LIMIT)
        if answer.status != 200:
            raise ProviderFailure(answer.status, ADAPTER.error_body(answer.status, answer.body))
        prediction = _prediction(answer)
        steps.saw(prediction)
    return prediction


def _ended_well(prediction: dict[str, Any]) -> dict[str, Any]:
    if prediction.get("status") != "succeeded":
        raise ProviderFailure(502, openai_error(_failure_message(prediction), "server_error", "prediction_failed"))
    return prediction


def _failure_message(prediction: dict[str, Any]) -> str:
    status, error = prediction.get("status"), prediction.get("error")
    said = f": {str(error)[:2000]}" if error else ""
    return f"Replicate prediction {prediction.get('id')} {status}{said}"


def _prediction(answer: StepAnswer) -> dict[str, Any]:
    found = json_value(answer.body)
    if not isinstance(found, dict) or not isinstance(found.get("id"), str):
        raise BadUpstreamResponse("Replicate answered with something other than a prediction", code="upstream_invalid_response")
    return found


def _text(output: Any) -> str:
    """A language model's output: a list of tokens (an iterator output) joined, or a string."""
    if output is None:
        return ""
    if isinstance(output, list):
        return "".join(item if isinstance(item, str) else orjson.dumps(item).decode() for item in output)
    return output if isinstance(output, str) else orjson.dumps(output).decode()


def _urls(prediction: dict[str, Any]) -> list[str]:
    output = prediction.get("output")
    items = output if isinstance(output, list) else [output]
    return [item for item in items if isinstance(item, str) and item]


def _usage(prediction: dict[str, Any]) -> dict[str, Any] | None:
    metrics = prediction.get("metrics") if isinstance(prediction.get("metrics"), dict) else {}
    counts = [metrics.get(name) for name in ("input_token_count", "output_token_count")]
    if not all(isinstance(count, int) and not isinstance(count, bool) for count in counts):
        return None
    return token_usage(counts[0], counts[1])


async def _encoded(url: str, index: int, steps: Steps) -> str:
    try:
        answer = await steps.fetch(UpstreamRequest("GET", url, {}, None), IMAGE_LIMIT, output_url=True)
    except BadUpstreamResponse as error:
        if error.code == "upstream_response_too_large":
            raise BadUpstreamResponse(f"image {index} of the output is larger than the {IMAGE_LIMIT // 2**20} MiB the "
                                      "gateway encodes as b64_json; ask for response_format 'url' instead",
                                      code="image_too_large") from None
        raise
    if answer.status != 200:
        raise BadUpstreamResponse(f"image {index} of the output could not be fetched for b64_json (HTTP {answer.status}); "
                                  "ask for response_format 'url' instead", code="image_unavailable")
    return base64.b64encode(answer.body).decode()


ADAPTER = ReplicateUnified()
