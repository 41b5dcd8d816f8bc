"""Usage, cost and stored bodies of the audio endpoints, for the log writer (enrich.py), off the request path.

- Transcriptions and translations (multipart uploads): the model is the form's ``model`` field; usage is
  the response's ``usage`` (``{"type": "duration", "seconds"}``: whisper-1, per second; ``{"type":
  "tokens", ...}``: gpt-4o-transcribe, token rates with audio tokens apart), else a ``verbose_json``
  body's ``duration``. A ``text``, ``srt`` or ``vtt`` response carries neither: unpriced, saying so.
- Speech (JSON in, audio out): per character of the request's ``input``, unless the response reports
  tokens (``stream_format: "sse"`` ends with ``speech.audio.done`` and its ``usage``).
- Audio is never stored as text: an upload is kept as its text fields with each file described, an
  audio response not at all (the row keeps its size and content type).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..forms import boundary_of, form_fields, form_parts
from ..usage import Cost, Usage

TRANSCRIBING = frozenset({"transcriptions", "translations"})
AUDIO_ENDPOINTS = TRANSCRIBING | {"speech"}
_UNREPORTED_FORMATS = ("text", "srt", "vtt")


def form_model(record: Any) -> str | None:
    """The ``model`` field of a captured multipart upload."""
    if record.endpoint not in TRANSCRIBING or not record.request_body:
        return None
    return form_fields(record.request_body, request_type(record)).get("model") or None


def audio_usage(record: Any, request_json: Any, response_json: Any, usage: Usage | None) -> Usage | None:
    """The usage of an audio call, given what the generic readers found (``usage``)."""
    if record.endpoint == "speech":
        if usage is not None and usage.total_tokens:
            return usage
        text = request_json.get("input") if isinstance(request_json, dict) else None
        return Usage(characters=len(text)) if isinstance(text, str) else None
    if usage is None and isinstance(response_json, dict):
        duration = response_json.get("duration")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool):
            return Usage(seconds=float(duration))
    return usage


def unreported(record: Any) -> Cost | None:
    """Why a successful audio call with no usage stays unpriced (None: the generic reason fits)."""
    if record.endpoint == "speech":
        return Cost.unpriced("the speech request's 'input' could not be read from its captured body, so its "
                             "characters cannot be counted")
    if record.endpoint not in TRANSCRIBING:
        return None
    fields = form_fields(record.request_body or b"", request_type(record))
    kind = fields.get("response_format") or "json"
    if kind in _UNREPORTED_FORMATS:
        return Cost.unpriced(f"a {kind} {record.endpoint[:-1]} reports neither usage nor the audio's duration; "
                             "ask for response_format json or verbose_json to have it priced")
    return Cost.unpriced(f"the {record.endpoint[:-1]} response reported no usage and no duration")


def stored_request(record: Any, body: bytes | None) -> bytes | None:
    """An upload as stored: its text fields, each file part named with its size and type, never its bytes."""
    if record.endpoint not in TRANSCRIBING or not body:
        return body
    boundary = boundary_of(request_type(record))
    if boundary is None:
        return body
    shown: dict[str, Any] = {}
    for part in form_parts(body, boundary):
        if part.value is not None:
            shown[part.name] = part.value
        elif part.filename is not None:
            shown[part.name] = f"[file {part.filename!r} ({part.content_type or 'no type'}, {part.size:,} bytes): not stored]"
        else:
            shown[part.name] = f"[{part.size:,} bytes: not stored]"
    if len(body) < (record.request_bytes or 0):
        shown["_capture"] = f"the first {len(body):,} of {record.request_bytes:,} bytes were read; parts past them are not listed"
    return orjson.dumps(shown)


def stored_response(record: Any, body: bytes | None) -> bytes | None:
    """Audio bytes are not stored: the row's response_bytes and response_content_type describe them."""
    if body and (record.response_content_type or "").lower().startswith("audio/"):
        return None
    return body


def request_type(record: Any) -> str | None:
    headers = record.request_headers if isinstance(record.request_headers, dict) else {}
    return record.content_type or headers.get("content-type")
