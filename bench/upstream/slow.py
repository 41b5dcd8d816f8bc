"""The slow upstream: OpenAI chat and Replicate predictions after 60 ms, and a 2 s SSE stream.

nginx-light has no sleep, so the latency regimes are served by aiohttp on uvloop. At these rates it
is far from saturated: 256 connections / 60 ms is at most ~4,300 requests/s, and the benchmark
records this process's CPU per cell so the README can show it stays below one core.

Run: python slow.py --port P --responses DIR [--latency-ms 60 --events 50 --stream-seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from aiohttp import web

OPENAI_KEY = "sk-test-openai"
REPLICATE_KEY = "r8_test_token"


def _compact(path: Path) -> bytes:
    return json.dumps(json.loads(path.read_text()), separators=(",", ":")).encode()


def build_app(responses: Path, latency: float, events: int, stream_seconds: float) -> web.Application:
    chat = _compact(responses / "openai-chat.json")
    prediction = _compact(responses / "replicate-prediction.json")
    chat_doc = json.loads(chat)
    words = chat_doc["choices"][0]["message"]["content"].split(" ")

    def authorised(request: web.Request, key: str) -> bool:
        return request.headers.get("Authorization") == f"Bearer {key}"

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        if not authorised(request, OPENAI_KEY):
            return web.json_response({"error": {"message": "Incorrect API key provided",
                                                "code": "invalid_api_key"}}, status=401)
        payload = json.loads(await request.read())
        if payload.get("stream"):
            return await stream(request)
        await asyncio.sleep(latency)
        return web.Response(body=chat, content_type="application/json")

    def chunk(delta: dict, finish: str | None, usage: dict | None = None) -> bytes:
        doc = {"id": chat_doc["id"], "object": "chat.completion.chunk", "created": chat_doc["created"],
               "model": chat_doc["model"], "choices": [] if usage else
               [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            doc["usage"] = usage
        return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        start = time.monotonic()
        interval = stream_seconds / events
        # events - 1 content chunks, then the usage chunk (stream_options.include_usage), then [DONE].
        for i in range(1, events + 1):
            # Sleep to an absolute schedule so per-chunk jitter does not stretch the stream.
            await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
            if i < events:
                last = i == events - 1
                delta = {"content": words[i % len(words)] + " "} if not last else {}
                await response.write(chunk(delta, "stop" if last else None))
            else:
                await response.write(chunk({}, None, chat_doc["usage"]))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def predictions(request: web.Request) -> web.Response:
        if not authorised(request, REPLICATE_KEY):
            return web.json_response({"title": "Unauthenticated", "status": 401}, status=401)
        await request.read()
        await asyncio.sleep(latency)
        return web.Response(body=prediction, status=201, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/predictions", predictions)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--responses", type=Path, default=Path(__file__).parent)
    parser.add_argument("--latency-ms", type=float, default=60.0)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--stream-seconds", type=float, default=2.0)
    args = parser.parse_args()
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    app = build_app(args.responses, args.latency_ms / 1000, args.events, args.stream_seconds)
    web.run_app(app, host="127.0.0.1", port=args.port, backlog=4096, access_log=None,
                print=None)


if __name__ == "__main__":
    main()
