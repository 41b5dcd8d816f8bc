"""OpenAI's audio API through the gateway: uploads passed on as sent, audio bytes back intact, and each
call's usage and cost in its log record (or, where the response cannot say, unpriced with the reason)."""

from __future__ import annotations

import io
import json
import math
import wave

import httpx
import pytest
from openai import BadRequestError, OpenAI, PermissionDeniedError

from modelport import create_headers
from modelport.forms import form_fields
from modelport.store import open_sqlite_store
from tests.conftest import OPENAI_KEY
from tests.fakes.openai_audio import BYTES_PER_CHARACTER, speech_bytes, transcript_of
from tests.test_logging import one_log, trace


@pytest.fixture(autouse=True)
def clean_fake(fake_openai):
    fake_openai[1].reset()


@pytest.fixture(scope="module")
def whisper_only(gateway, fake_openai) -> str:
    """A stored OpenAI provider that allows whisper-1 only."""
    store = open_sqlite_store(gateway.data_dir)
    try:
        if store.get_provider("openai-whisper-only") is None:
            store.create_provider("openai-whisper-only", provider="openai", secret=OPENAI_KEY,
                                  custom_host=fake_openai[0].url + "/v1", allowed_models=["whisper-1"])
    finally:
        store.close()
    return "@openai-whisper-only"


def client(gateway, provider: str = "@openai-test", trace_id: str | None = None) -> OpenAI:
    headers = create_headers(api_key=gateway.admin_key, provider=provider, trace_id=trace_id)
    return OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0, default_headers=headers)


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV of ``seconds``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()


def test_a_json_transcription_is_priced_per_second_from_its_usage(gateway, fake_openai):
    trace_id = trace()
    audio = wav(2.5)
    result = client(gateway, trace_id=trace_id).audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", audio, "audio/wav"), response_format="json")
    assert result.text == transcript_of(2.5)
    files = fake_openai[1].last.body
    assert audio in files  # the upload reached OpenAI byte for byte
    row = one_log(gateway, trace_id)
    assert (row["endpoint"], row["model"], row["status"]) == ("transcriptions", "whisper-1", 200)
    assert row["cost_status"] == "priced" and row["cost_usd"] == pytest.approx(3 * 0.0001)  # usage says 3 s
    stored = row["request_body"]
    assert "whisper-1" in stored and "hello.wav" in stored and "not stored" in stored
    assert row["request_bytes"] > len(audio)


def test_a_transcription_with_token_usage_prices_audio_tokens_apart(gateway):
    trace_id = trace()
    result = client(gateway, trace_id=trace_id).audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("long.wav", wav(4.0), "audio/wav"), prompt="three words here")
    assert result.text == transcript_of(4.0)
    row = one_log(gateway, trace_id)
    # 40 audio tokens at $6/1M, 3 prompt tokens at $2.50/1M, 5 output words at $10/1M
    assert row["cost_status"] == "priced"
    assert row["cost_usd"] == pytest.approx((40 * 6 + 3 * 2.5 + 5 * 10) / 1e6)
    assert (row["input_tokens"], row["output_tokens"]) == (43, 5)


def test_a_verbose_json_transcription_is_priced(gateway):
    trace_id = trace()
    result = client(gateway, trace_id=trace_id).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", wav(1.2), "audio/wav"), response_format="verbose_json")
    assert result.duration == pytest.approx(1.2)
    row = one_log(gateway, trace_id)
    assert row["cost_status"] == "priced" and row["cost_usd"] == pytest.approx(math.ceil(1.2) * 0.0001)


def test_a_verbose_translation_is_priced_from_its_duration(gateway):
    trace_id = trace()
    result = client(gateway, trace_id=trace_id).audio.translations.create(
        model="whisper-1", file=("fr.wav", wav(3.0), "audio/wav"), response_format="verbose_json")
    assert result.text == transcript_of(3.0)
    row = one_log(gateway, trace_id)
    assert row["endpoint"] == "translations"
    assert row["cost_status"] == "priced" and row["cost_usd"] == pytest.approx(3.0 * 0.0001)


def test_a_text_transcription_stays_unpriced_and_says_why(gateway):
    trace_id = trace()
    text = client(gateway, trace_id=trace_id).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", wav(1.0), "audio/wav"), response_format="text")
    assert text.strip() == transcript_of(1.0)
    row = one_log(gateway, trace_id)
    assert row["cost_status"] == "unpriced" and row["cost_usd"] is None
    assert "text transcription reports neither usage nor the audio's duration" in row["cost_reason"]


def test_speech_comes_back_byte_for_byte_and_is_priced_per_character(gateway):
    trace_id = trace()
    words = "The gateway passes audio through untouched. " * 40
    response = client(gateway, trace_id=trace_id).audio.speech.create(model="tts-1", voice="alloy", input=words)
    audio = response.read()
    assert audio == speech_bytes(words, "mp3") and len(audio) == len(words) * BYTES_PER_CHARACTER
    row = one_log(gateway, trace_id)
    assert (row["endpoint"], row["model"], row["response_content_type"]) == ("speech", "tts-1", "audio/mpeg")
    assert row["response_bytes"] == len(audio) and row["response_body"] is None  # audio is never stored
    assert row["cost_status"] == "priced" and row["cost_usd"] == pytest.approx(len(words) * 15 / 1e6)


def test_gpt_4o_mini_tts_is_an_estimate(gateway):
    trace_id = trace()
    words = "hello there"
    audio = client(gateway, trace_id=trace_id).audio.speech.create(
        model="gpt-4o-mini-tts", voice="coral", input=words, response_format="wav").read()
    assert audio == speech_bytes(words, "wav")
    row = one_log(gateway, trace_id)
    assert row["cost_status"] == "estimated" and "$0.015 a minute" in row["cost_reason"]


def test_an_allow_list_reads_the_uploads_model_field(gateway, whisper_only, fake_openai):
    allowed = client(gateway, whisper_only).audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(0.5), "audio/wav"))
    assert allowed.text == transcript_of(0.5)
    seen = fake_openai[1].count
    with pytest.raises(PermissionDeniedError, match="model 'gpt-4o-transcribe' is not allowed"):
        client(gateway, whisper_only).audio.transcriptions.create(model="gpt-4o-transcribe",
                                                                  file=("a.wav", wav(0.5), "audio/wav"))
    assert fake_openai[1].count == seen  # nothing reached OpenAI


def test_an_upload_whose_model_cannot_be_read_is_refused_under_an_allow_list(gateway, whisper_only, fake_openai):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + wav(0.1) + f"\r\n--{boundary}--\r\n".encode()
    response = httpx.post(f"{gateway.v1}/audio/transcriptions", content=body, headers={
        **gateway.headers(**{"x-portkey-provider": whisper_only}), "content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 403 and "'model' form field" in response.json()["error"]["message"]
    assert response.headers["x-portkey-gateway-exception"] == "true"


def test_a_provider_without_the_endpoint_is_a_clear_400(gateway):
    with pytest.raises(BadRequestError, match="does not serve /v1/audio/speech through the unified API") as refused:
        client(gateway, "@anthropic-test").audio.speech.create(model="tts-1", voice="alloy", input="hi")
    assert refused.value.response.headers["x-portkey-gateway-exception"] == "true"


def test_an_upload_larger_than_the_gateway_holds_streams_through_and_is_priced(gateway, fake_openai):
    trace_id = trace()
    audio = wav(330.0)  # 5.3 MB: more than the 4 MiB the gateway holds, so it streams as on the proxy route
    result = client(gateway, trace_id=trace_id).audio.transcriptions.create(model="whisper-1", file=("long.wav", audio, "audio/wav"))
    assert result.text == transcript_of(330.0)
    assert audio in fake_openai[1].last.body
    row = one_log(gateway, trace_id)
    assert row["model"] == "whisper-1" and row["cost_usd"] == pytest.approx(330 * 0.0001)
    assert "parts past them are not listed" in row["request_body"]


def test_form_fields_are_read_only_when_whole_in_the_captured_prefix():
    boundary = "xyz"
    body = (b'--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nlong prompt cut here')
    assert form_fields(body, f'multipart/form-data; boundary="{boundary}"') == {"model": "whisper-1"}
    assert form_fields(body, "application/json") == {}


def test_streamed_speech_is_priced_from_the_tokens_it_reports(gateway):
    trace_id = trace()
    headers = gateway.headers(**{"x-portkey-provider": "@openai-test", "x-portkey-trace-id": trace_id})
    body = {"model": "gpt-4o-mini-tts", "voice": "coral", "input": "hello there", "stream_format": "sse"}
    with httpx.stream("POST", f"{gateway.v1}/audio/speech", json=body, headers=headers, timeout=20) as response:
        events = b"".join(response.iter_bytes())
    assert response.status_code == 200 and b"speech.audio.done" in events
    row = one_log(gateway, trace_id)
    assert (row["input_tokens"], row["output_tokens"]) == (2, 12)
    assert row["cost_usd"] == pytest.approx((2 * 0.6 + 12 * 12) / 1e6)


def test_override_params_on_an_upload_are_refused_not_dropped(gateway, fake_openai):
    config = {"provider": "@openai-test", "override_params": {"model": "whisper-1"}}
    headers = {"x-portkey-api-key": gateway.admin_key, "x-portkey-config": json.dumps(config)}
    seen = fake_openai[1].count
    with pytest.raises(BadRequestError, match="override_params cannot be applied"):
        OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0, default_headers=headers).audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("a.wav", wav(0.2), "audio/wav"))
    assert fake_openai[1].count == seen
