"""The event-stream framing (providers/bedrock/eventstream.py): any split of the bytes decodes to the
same messages, a corrupted byte is caught by the CRCs, and botocore's decoder reads what we encode."""

from __future__ import annotations

import random

import pytest
from botocore.eventstream import EventStreamBuffer

from modelport.providers.bedrock import eventstream
from modelport.providers.bedrock.eventstream import Decoder, FramingError

EVENTS = [
    ("messageStart", b'{"role":"assistant"}'),
    ("contentBlockDelta", '{"contentBlockIndex":0,"delta":{"text":"h\u00e9llo"}}'.encode()),
    ("contentBlockStop", b'{"contentBlockIndex":0}'),
    ("messageStop", b'{"stopReason":"end_turn"}'),
    ("metadata", b'{"usage":{"inputTokens":3,"outputTokens":2,"totalTokens":5},"metrics":{"latencyMs":10}}'),
]
STREAM = b"".join(eventstream.event(name, payload) for name, payload in EVENTS)


def test_botocore_reads_what_we_encode():
    buffer = EventStreamBuffer()
    buffer.add_data(STREAM)
    decoded = [(m.headers[":event-type"], m.payload) for m in buffer]
    assert decoded == EVENTS


@pytest.mark.parametrize("seed", range(5))
def test_any_split_decodes_the_same(seed):
    rng = random.Random(seed)
    decoder, messages, at = Decoder(), [], 0
    while at < len(STREAM):
        step = rng.choice((1, 2, 3, 7, 13, 64))
        messages += decoder.feed(STREAM[at:at + step])
        at += step
    assert [(m.event_type, m.payload) for m in messages] == EVENTS
    assert decoder.pending == 0 and all(m.message_type == "event" for m in messages)


def test_exceptions_are_marked():
    [message] = Decoder().feed(eventstream.exception("throttlingException", b'{"message":"slow down"}'))
    assert message.message_type == "exception" and message.event_type == "throttlingException"


@pytest.mark.parametrize("where", [2, 9, 20, len(STREAM) // 5 - 6])
def test_a_flipped_byte_is_caught(where):
    broken = bytearray(STREAM)
    broken[where] ^= 0x01
    with pytest.raises(FramingError):
        Decoder().feed(bytes(broken))


def test_a_length_past_the_bound_is_refused_before_buffering():
    with pytest.raises(FramingError):
        Decoder(max_message=64).feed(eventstream.event("contentBlockDelta", b"x" * 100))
