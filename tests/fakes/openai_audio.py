"""The fake OpenAI's audio API: ``POST /v1/audio/transcriptions``, ``/v1/audio/translations`` (multipart
uploads) and ``/v1/audio/speech`` (JSON in, audio bytes out).

Formats follow platform.openai.com/docs/api-reference/audio (createTranscription, createTranslation,
createSpeech; the transcription, verbose transcription and speech-stream event objects). Like the real
API it wants a ``file`` and a ``model`` form field, refuses an unknown model or a file whose name is not
an audio format, takes only ``json`` or ``text`` from the gpt-4o transcribers and refuses ``sse`` from
tts-1. The multipart body is read with the standard library's email parser, not the gateway's reader.

Replies are deterministic: a WAV upload's duration is read from its header (other formats count one
second per 16 KB); the transcript is ``"Heard <duration> seconds of audio."``. whisper-1 reports
``usage: {"type": "duration", "seconds": ceil(duration)}``, the gpt-4o transcribers token usage (ten audio
tokens a second, one text token per word of the prompt, one output token per transcript word); a
translation reports none (its API reference has no usage), ``verbose_json`` gives the duration. Speech
answers ``speech_bytes(input, format)``: 256 bytes a character.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import io
import math
import wave
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai import OpenAIError, UpstreamState, _json, _open_sse, word_tokens

TRANSCRIBERS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
SPEAKERS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin", "cedar")
AUDIO_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                "wav": "audio/wav", "pcm": "audio/pcm"}
BYTES_PER_CHARACTER = 256
_SPEECH_FIELDS = {"model", "input", "voice", "instructions", "response_format", "speed", "stream_format"}


def add_audio_routes(app: web.Application, state: UpstreamState) -> None:
    async def transcriptions(request: web.Request) -> web.Response:
        return await _transcribe(request, "transcribe")

    async def translations(request: web.Request) -> web.Response:
        return await _transcribe(request, "translate")

    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/translations", translations)
    app.router.add_post("/v1/audio/speech", speech)


def form_of(raw: bytes, content_type: str) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """(text fields, files by field name as (filename, bytes)), parsed as the MIME message it is."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise OpenAIError(400, "Could not parse multipart form")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[name] = (part.get_filename(), payload)
        else:
            fields[name] = payload.decode("utf-8")
    return fields, files


def audio_seconds(filename: str, data: bytes) -> float:
    if filename.lower().endswith(".wav"):
        try:
            with wave.open(io.BytesIO(data)) as audio:
                return audio.getnframes() / audio.getframerate()
        except (wave.Error, EOFError):
            raise OpenAIError(400, "Audio file might be corrupted or unsupported", param="file") from None
    return len(data) / 16384


def transcript_of(seconds: float) -> str:
    return f"Heard {seconds:.2f} seconds of audio."


async def _transcribe(request: web.Request, task: str) -> web.Response:
    if not request.content_type.startswith("multipart/form-data"):
        raise OpenAIError(400, "Invalid Content-Type header, expected multipart/form-data")
    fields, files = form_of(await request.read(), request.headers["content-type"])
    model = fields.get("model")
    if not model:
        raise OpenAIError(400, "you must provide a model parameter", param="model")
    allowed = TRANSCRIBERS if task == "transcribe" else ("whisper-1",)
    if model not in allowed:
        raise OpenAIError(400, f"Invalid model {model}", param="model", code="invalid_model")
    if "file" not in files:
        raise OpenAIError(400, "1 validation error for Request\nbody -> file\n  field required", param="file")
    filename, data = files["file"]
    if filename.rsplit(".", 1)[-1].lower() not in AUDIO_EXTENSIONS:
        raise OpenAIError(400, f"Invalid file format. Supported formats: {list(AUDIO_EXTENSIONS)}", param="file")
    kind = fields.get("response_format", "json")
    if kind not in FORMATS or (model != "whisper-1" and kind not in ("json", "text")):
        raise OpenAIError(400, f"response_format '{kind}' is not compatible with model '{model}'", param="response_format")
    seconds = audio_seconds(filename, data)
    text = transcript_of(seconds)
    if kind == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if kind in ("srt", "vtt"):
        return web.Response(text=_subtitles(kind, seconds, text), content_type="text/plain")
    body: dict[str, Any] = {"text": text}
    if kind == "verbose_json":
        body = {"task": task, "language": "english", "duration": round(seconds, 2), "text": text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": round(seconds, 2), "text": text, "tokens": [],
                              "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01}]}
    if task == "transcribe":
        body["usage"] = _usage(model, seconds, fields.get("prompt", ""), text)
    return _json(body)


def _usage(model: str, seconds: float, prompt: str, text: str) -> dict[str, Any]:
    if model == "whisper-1":
        return {"type": "duration", "seconds": math.ceil(seconds)}
    audio, prompt_tokens, output = math.ceil(seconds * 10), word_tokens(prompt), word_tokens(text)
    return {"type": "tokens", "input_tokens": audio + prompt_tokens, "output_tokens": output,
            "total_tokens": audio + prompt_tokens + output,
            "input_token_details": {"text_tokens": prompt_tokens, "audio_tokens": audio}}


def _subtitles(kind: str, seconds: float, text: str) -> str:
    end = f"00:00:{seconds:06.3f}"
    if kind == "srt":
        return f"1\n00:00:00,000 --> {end.replace('.', ',')}\n{text}\n\n"
    return f"WEBVTT\n\n00:00:00.000 --> {end}\n{text}\n\n"


def speech_bytes(text: str, kind: str = "mp3") -> bytes:
    """The audio the fake answers for ``text``: deterministic bytes, 256 a character."""
    seed = hashlib.sha256(f"{kind}:{text}".encode()).digest()
    size = len(text) * BYTES_PER_CHARACTER
    return (seed * (size // len(seed) + 1))[:size]


async def speech(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    for name in body:
        if name not in _SPEECH_FIELDS:
            raise OpenAIError(400, f"Unrecognized request argument supplied: {name}", param=name)
    model, text, voice = body.get("model"), body.get("input"), body.get("voice")
    if model not in SPEAKERS:
        raise OpenAIError(400, f"Invalid model {model}", param="model", code="invalid_model")
    if not isinstance(text, str) or not text:
        raise OpenAIError(400, "input must be a non-empty string", param="input")
    if len(text) > 4096:
        raise OpenAIError(400, "string too long. Expected a string with maximum length 4096", param="input")
    if voice not in VOICES:
        raise OpenAIError(400, f"Input should be one of {', '.join(VOICES)}", param="voice")
    kind = body.get("response_format", "mp3")
    if kind not in SPEECH_TYPES:
        raise OpenAIError(400, f"Input should be one of {', '.join(SPEECH_TYPES)}", param="response_format")
    if model != "gpt-4o-mini-tts" and ("instructions" in body or body.get("stream_format", "audio") != "audio"):
        raise OpenAIError(400, f"instructions and stream_format 'sse' are not supported by {model}")
    audio = speech_bytes(text, kind)
    if body.get("stream_format") == "sse":
        return await _speech_events(request, audio, text)
    return web.Response(body=audio, content_type=SPEECH_TYPES[kind])


async def _speech_events(request: web.Request, audio: bytes, text: str) -> web.StreamResponse:
    response = await _open_sse(request)
    for start in range(0, len(audio), 4096):
        delta = {"type": "speech.audio.delta", "audio": base64.b64encode(audio[start:start + 4096]).decode()}
        await response.write(b"data: " + orjson.dumps(delta) + b"\n\n")
    tokens = word_tokens(text)
    done = {"type": "speech.audio.done",
            "usage": {"input_tokens": tokens, "output_tokens": tokens * 6, "total_tokens": tokens * 7}}
    await response.write(b"data: " + orjson.dumps(done) + b"\n\n")
    await response.write_eof()
    return response
