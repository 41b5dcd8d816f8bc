"""The Files API. Uploads are read part by part and hashed as they arrive, never held whole in memory,
so a 100 MB upload through a gateway can be checked by its size and sha256 alone."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.replicate_state import invalid, not_found, now, paginate, problem, state_of

CHUNK = 64 * 1024
# Verbatim from the spec's 413 response, whatever limit the fake is configured with.
TOO_LARGE = "Files must be less than 100MB in size"


@dataclass
class FakeFile:
    id: str
    seq: int
    name: str
    content_type: str
    size: int
    sha256: str
    md5: str
    metadata: dict[str, Any]
    created_at: datetime = field(default_factory=now)

    def json(self, api_origin: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": self.size,
            # Recorded: the etag is the bare md5 hex, and checksums carry md5 beside sha256.
            "etag": self.md5,
            "checksums": {"sha256": self.sha256, "md5": self.md5},
            "metadata": self.metadata,
            "created_at": _millis(self.created_at),
            # Recorded files expired 24 hours after creation.
            "expires_at": _millis(self.created_at + timedelta(hours=24)),
            "urls": {"get": f"{api_origin}/v1/files/{self.id}"},
        }


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/files", create_file)
    router.add_get("/v1/files", list_files)
    router.add_get("/v1/files/{id}", get_file)
    router.add_delete("/v1/files/{id}", delete_file)


async def create_file(request: web.Request) -> web.Response:
    state = state_of(request)
    if request.content_type != "multipart/form-data":
        raise problem(415, "Uploads must be multipart/form-data", "Unsupported Media Type")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    content: tuple[str | None, str | None, int, str, str] | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "content":
            content = (
                part.filename,
                part.headers.get("Content-Type"),
                *await _digest(part, state.max_upload_bytes),
            )
        else:
            fields[part.name or ""] = (await part.read()).decode("utf-8", "replace")
    if content is None:
        raise invalid(("required", "", "content is required"))
    filename, part_type, size, sha256, md5 = content
    if size > state.max_upload_bytes:
        raise problem(413, TOO_LARGE, "Request Entity Too Large")
    file = FakeFile(
        id=base64.urlsafe_b64encode(str(uuid.uuid4()).encode()).decode().rstrip("="),
        seq=state.next_seq(),
        name=fields.get("filename") or filename or "file",
        content_type=fields.get("type") or part_type or "application/octet-stream",
        size=size,
        sha256=sha256,
        md5=md5,
        metadata=_metadata(fields.get("metadata")),
    )
    state.files[file.id] = file
    return web.json_response(file.json(state.api_origin(request)), status=201)


async def _digest(part: BodyPartReader, limit: int) -> tuple[int, str, str]:
    """Size and checksums of a part, reading it in chunks; past ``limit`` it only counts.

    It keeps reading past the limit so the client finishes sending and then reads the 413, instead of
    failing on a write to a closed socket.
    """
    sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size <= limit:
            sha256.update(chunk)
            md5.update(chunk)
    return size, sha256.hexdigest(), md5.hexdigest()


def _metadata(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise invalid(("invalid_type", "metadata", "metadata must be a JSON object"))
    return value


def _millis(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _file(request: web.Request) -> FakeFile:
    found = state_of(request).files.get(request.match_info["id"])
    if found is None:
        raise not_found()
    return found


async def list_files(request: web.Request) -> web.Response:
    state = state_of(request)
    origin = state.api_origin(request)
    return web.json_response(
        paginate(request, state, state.files.values(), lambda f: f.seq, lambda f: f.json(origin))
    )


async def get_file(request: web.Request) -> web.Response:
    return web.json_response(_file(request).json(state_of(request).api_origin(request)))


async def delete_file(request: web.Request) -> web.Response:
    file = _file(request)
    del state_of(request).files[file.id]
    # Recorded: 204 with Content-Type text/plain.
    return web.Response(status=204, headers={"Content-Type": "text/plain; charset=UTF-8"})
