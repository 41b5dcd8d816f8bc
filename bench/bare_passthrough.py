"""The practical limit for a Python gateway: plain ASGI on uvicorn + a pooled aiohttp client.

No auth, no logging, no routing: forward method, path, headers and body to the origin named by
`x-bench-upstream`, stream the answer back. Whatever ModelPort adds on top of this is its own cost.

Run: python bare_passthrough.py --port P
"""

import argparse

import aiohttp
import uvicorn

HOP_BY_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
              b"x-bench-upstream"}
session: aiohttp.ClientSession | None = None


async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if session is None:  # created on the server's loop; unlimited pool like a real gateway
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                        auto_decompress=False)
    headers = dict(scope["headers"])
    origin = headers[b"x-bench-upstream"].decode()
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    forward = {k.decode(): v.decode() for k, v in scope["headers"] if k not in HOP_BY_HOP}
    url = origin + scope["raw_path"].decode()
    if scope["query_string"]:
        url += "?" + scope["query_string"].decode()
    async with session.request(scope["method"], url, headers=forward, data=body) as upstream:
        await send({"type": "http.response.start", "status": upstream.status,
                    "headers": [(k.encode(), v.encode()) for k, v in upstream.headers.items()
                                if k.lower().encode() not in HOP_BY_HOP]})
        async for chunk in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run("bare_passthrough:app" if args.workers > 1 else app, host="127.0.0.1",
                port=args.port, workers=args.workers, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", backlog=4096)
