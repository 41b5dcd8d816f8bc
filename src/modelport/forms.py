"""The text fields of a ``multipart/form-data`` body (RFC 7578), read from a prefix of it.

The audio endpoints (``/v1/audio/transcriptions``, ``/translations``) take multipart uploads. The
gateway passes those bytes on as sent; it only needs a few small text fields (``model``,
``response_format``) for a model allow-list and for the log. Clients put the text fields before the
file (httpx, which the OpenAI and Portkey SDKs use, encodes data fields first), so a prefix of the body
usually holds them; a field that is not whole in the prefix is not returned. File parts are described,
never decoded: what a field holds is returned only for parts without a ``filename``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'\bfilename="([^"]*)"', re.IGNORECASE)
_PART_TYPE = re.compile(rb"^content-type:\s*([^\r\n;]+)", re.IGNORECASE | re.MULTILINE)
FIELD_LIMIT = 4096  # a text field longer than this (a long prompt) is not kept whole


@dataclass(frozen=True, slots=True)
class FormPart:
    """One part: a text field's ``value``, or a file's ``filename``/``content_type`` and ``size``."""

    name: str
    value: str | None = None
    filename: str | None = None
    content_type: str | None = None
    size: int = 0


def boundary_of(content_type: str | None) -> str | None:
    """The boundary of a ``multipart/form-data`` content type, else None (string operations: a regex here
    cost 11 µs a call)."""
    if not content_type or not content_type.lstrip()[:19].lower() == "multipart/form-data":
        return None
    at = content_type.lower().find("boundary=")
    if at == -1:
        return None
    value = content_type[at + 9:].split(";", 1)[0].strip()
    return value.strip('"') or None


def form_parts(body: bytes, boundary: str, *, until_file: bool = False) -> list[FormPart]:
    """The parts that are whole in ``body`` (a prefix of the form may end in the middle of one).
    ``until_file``: stop at the first file part, unread, so its bytes are never scanned (the text
    fields are before it)."""
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[FormPart] = []
    start = body.find(delimiter)
    while start != -1:
        head_start = start + len(delimiter)
        if body[head_start:head_start + 2] == b"--":
            break  # the closing delimiter
        head_end = body.find(b"\r\n\r\n", head_start)
        if head_end == -1 or (until_file and _FILENAME.search(body, head_start, head_end)):
            break
        end = body.find(b"\r\n" + delimiter, head_end)
        if end == -1:
            break  # cut here: this part is not whole
        part = _part(body[head_start:end])
        if part is not None:
            parts.append(part)
        start = end + 2
    return parts


def form_fields(body: bytes, content_type: str | None, *, until_file: bool = False) -> dict[str, str]:
    """The text fields whole in ``body``, by name ({} when it is not a multipart form)."""
    boundary = boundary_of(content_type)
    if boundary is None:
        return {}
    parts = form_parts(body, boundary, until_file=until_file)
    return {part.name: part.value for part in parts if part.value is not None}


def _part(raw: bytes) -> FormPart | None:
    head, separator, content = raw.partition(b"\r\n\r\n")
    if not separator:
        return None
    name = _NAME.search(head)
    if name is None:
        return None
    filename = _FILENAME.search(head)
    field_name = name.group(1).decode("utf-8", "replace")
    if filename is not None:
        kind = _PART_TYPE.search(head.strip())
        return FormPart(field_name, filename=filename.group(1).decode("utf-8", "replace"),
                        content_type=kind.group(1).decode("latin-1").strip() if kind else None, size=len(content))
    if len(content) > FIELD_LIMIT:
        return FormPart(field_name, size=len(content))
    return FormPart(field_name, value=content.decode("utf-8", "replace"), size=len(content))
