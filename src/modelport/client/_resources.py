"""OpenAI-style resources: ``client.chat.completions.create(...)``, ``client.models.list()``...

Results are ``APIObject``s built from the JSON, so ``r.choices[0].message.content`` works without
a schema; ``stream=True`` gives a ``ChunkStream`` of the same. ``extra_headers`` and
``extra_body`` are accepted as in the OpenAI SDK, so calls port unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from ._errors import APIError
from ._response import APIObject, Response, wrap
from ._streaming import AsyncChunkStream, AsyncStream, ChunkStream, Stream

if TYPE_CHECKING:
    from ._client import AsyncModelPort, ModelPort


def _split(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str] | None]:
    """Body and per-call headers of an OpenAI-style ``create(**params)``."""
    headers = params.pop("extra_headers", None)
    extra_body = params.pop("extra_body", None) or {}
    return {**params, **extra_body}, headers


def _result(answer: Response | Stream | AsyncStream) -> Any:
    if not isinstance(answer, Response):
        raise APIError(f"expected a JSON response, got an event stream from {answer.http_response.url}")
    return wrap(answer.json())


class Endpoint:
    """A ``create``-only resource at one path: completions, embeddings, messages, responses."""

    def __init__(self, client: ModelPort, path: str) -> None:
        self._client = client
        self._path = path

    def create(self, **params: Any) -> APIObject | ChunkStream:
        body, headers = _split(params)
        answer = self._client.post(self._path, data=body, headers=headers)
        return ChunkStream(answer) if isinstance(answer, Stream) else _result(answer)


class Chat:
    def __init__(self, client: ModelPort) -> None:
        self.completions = Endpoint(client, "/chat/completions")


class Models:
    def __init__(self, client: ModelPort) -> None:
        self._client = client

    def list(self) -> APIObject:
        return cast(APIObject, _result(self._client.get("/models")))


class AsyncEndpoint:
    def __init__(self, client: AsyncModelPort, path: str) -> None:
        self._client = client
        self._path = path

    async def create(self, **params: Any) -> APIObject | AsyncChunkStream:
        body, headers = _split(params)
        answer = await self._client.post(self._path, data=body, headers=headers)
        return AsyncChunkStream(answer) if isinstance(answer, AsyncStream) else _result(answer)


class AsyncChat:
    def __init__(self, client: AsyncModelPort) -> None:
        self.completions = AsyncEndpoint(client, "/chat/completions")


class AsyncModels:
    def __init__(self, client: AsyncModelPort) -> None:
        self._client = client

    async def list(self) -> APIObject:
        return cast(APIObject, _result(await self._client.get("/models")))
