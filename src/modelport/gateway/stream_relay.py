"""``GET /v1/streams/<token>``: relay a provider's SSE stream that the gateway signed a reference to.

No auth header is needed (Replicate's JS and Go clients send none to ``urls.stream``); the token is
the capability. The caller's ``Authorization`` (replicate-python sends its key here) is never
forwarded: the stream host is the provider's choice, not an operator-configured host.
"""

from __future__ import annotations

import time

from yarl import URL

from ..log_record import LogRecord
from ..providers.registry import get_provider
from ..asgi import Receive, Scope, Send, send_error
from ..errors import GatewayError, NotFound
from ..transport.send import open_upstream
from .headers import new_trace_id
from .respond import relay
from .streams import InvalidStreamToken

_PASS = frozenset({b"accept", b"last-event-id", b"cache-control", b"user-agent"})


async def relay_stream(gateway, scope: Scope, receive: Receive, send: Send, token: str) -> None:
    started = time.perf_counter()
    record = LogRecord(trace_id="", method=scope["method"], path="/v1/streams/…", endpoint="stream")
    try:
        try:
            claims = gateway.signer.verify(token)
        except InvalidStreamToken:
            raise NotFound("this stream link is invalid or has expired; fetch the prediction again for a fresh one") from None
        record.trace_id, record.provider, record.slug, record.key_id = claims.get("t", ""), claims.get("p"), claims.get("s"), claims.get("k")
        record.prediction_id = claims.get("i")
        spec = get_provider(record.provider or "")  # every link names its provider (pipeline.py, provider_webhooks.py)
        if spec is None:
            raise NotFound("this stream link names no provider this gateway knows; fetch the prediction again for a fresh one")
        url = URL(claims["u"], encoded=True)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k in _PASS]
        span = record.attempt("stream", spec.id, record.slug)
        upstream = await open_upstream(gateway.upstreams, bool(claims.get("g")), spec.id, "GET", url, headers, None, None)
        span.status = upstream.status
        extra = [(b"x-portkey-trace-id", record.trace_id.encode("latin-1")), (b"x-portkey-provider", spec.id.encode())]
        relayed = await relay(send, receive, upstream, extra, gateway.log_body_cap)
        upstream.release()
        relayed.fill(record, gateway.log_headers)
    except GatewayError as error:
        record.failed(error.status, error.message)
        record.trace_id = record.trace_id or new_trace_id()  # an invalid token names no trace: a new one
        await send_error(send, error, record.trace_id)
    finally:
        record.finished(started)
        gateway.recorder.submit(record)
