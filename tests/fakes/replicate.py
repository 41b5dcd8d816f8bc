"""A fake Replicate API, strict enough that replicate-python 1.0.7, raw HTTP and a gateway in between
cannot tell it from api.replicate.com (research: shared/research/replicate.md, §4.3 checklist).

    server, replicate = start_fake_replicate()
    client = replicate_client.Client(api_token="r8_test_token", base_url=server.url)
    ...
    replicate.fail_next(429, path="/v1/predictions")   # script it
    replicate.requests_to("/v1/predictions")           # inspect what arrived
    server.stop()

Pieces: ``replicate_state`` (state, knobs, pagination, problem bodies), ``replicate_catalog`` (the
``test/*`` models and what they do), ``replicate_predictions`` (predictions and trainings),
``replicate_stream`` (the SSE host, on a second origin like stream.replicate.com),
``replicate_resources`` and ``replicate_files`` (the rest of the API), ``replicate_middleware``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from tests.fakes import replicate_files, replicate_predictions, replicate_resources
from tests.fakes.replicate_catalog import seed_deployments, seed_models
from tests.fakes.replicate_middleware import authenticate, decorate, inject_faults, problems, record
from tests.fakes.replicate_state import ReplicateState, attach_state
from tests.fakes.replicate_stream import make_stream_app
from tests.fakes.server import FakeServer

__all__ = ["ReplicateState", "make_replicate_app", "start_fake_replicate"]


def make_replicate_app(
    token: str = "r8_test_token",
    *,
    public_origin: str | None = None,
    stream_origin: str | None = None,
    page_size: int = 2,
    max_upload_bytes: int = 100 * 1024 * 1024,
) -> web.Application:
    """The API app; its state is ``app["replicate"]``.

    On startup it also serves the SSE host on its own loopback port (``state.stream_site``).
    ``public_origin`` is the origin absolute URLs use (default: the socket each request arrived on);
    ``stream_origin`` overrides the origin advertised in ``urls.stream`` (default: the SSE host).
    """
    state = ReplicateState(
        token,
        public_origin=public_origin,
        stream_origin=stream_origin,
        page_size=page_size,
        max_upload_bytes=max_upload_bytes,
    )
    state.models = seed_models()
    state.deployments = seed_deployments(state.models)
    # Inputs may carry data: URIs up to 256 KB each [spec]; uploads are streamed and not bound by this.
    app = web.Application(
        middlewares=[record, decorate, inject_faults, problems, authenticate],
        client_max_size=16 * 1024 * 1024,
    )
    attach_state(app, state, "api")
    replicate_predictions.add_routes(app.router)
    replicate_resources.add_routes(app.router)
    replicate_files.add_routes(app.router)
    app.cleanup_ctx.append(_serve_streams)
    return app


async def _serve_streams(app: web.Application) -> AsyncIterator[None]:
    state: ReplicateState = app["replicate"]
    runner = web.AppRunner(make_stream_app(state), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.stream_site = f"http://127.0.0.1:{port}"
    if state.stream_origin is None:
        state.stream_origin = state.stream_site
    yield
    await runner.cleanup()


def start_fake_replicate(**options: object) -> tuple[FakeServer, ReplicateState]:
    """Start the fake on a loopback port with its public origin filled in; stop it with ``server.stop()``."""
    app = make_replicate_app(**options)  # type: ignore[arg-type]
    server = FakeServer(app).start()
    state: ReplicateState = app["replicate"]
    if state.public_origin is None:
        state.public_origin = server.url
    return server, state
