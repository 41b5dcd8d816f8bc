"""x-portkey-* headers → RequestOptions: the common case (key and provider only) takes a shortcut that
builds the tuple positionally; it must give exactly what the general path gives."""

from __future__ import annotations

import pytest

from modelport.errors import InvalidHeader
from modelport.gateway.headers import RequestOptions, parse_request_options

KEY = b"mp-test-key-0123456789abcdefghijklmnop"
BASE = [(b"host", b"gw"), (b"content-type", b"application/json"), (b"content-length", b"12"), (b"x-custom", b"1")]


@pytest.mark.parametrize("extra", [
    [(b"x-portkey-api-key", KEY), (b"x-portkey-provider", b"@up")],
    [(b"authorization", b"Bearer " + KEY), (b"x-portkey-virtual-key", b"up")],
    [(b"x-portkey-provider", b"openai"), (b"authorization", b"Bearer sk-provider")],
    [(b"x-portkey-api-key", KEY), (b"x-portkey-provider", b"@up"), (b"x-portkey-trace-id", b"t-1")],
])
def test_the_common_headers_give_the_same_options_as_the_general_path(extra):
    options = parse_request_options(BASE + extra)
    # The general path, forced by one more option that keeps its default value.
    general = parse_request_options(BASE + extra + [(b"x-portkey-strict-open-ai-compliance", b"false")])
    assert options == general._replace(trace_id=options.trace_id)
    assert options.upstream_headers == ((b"content-type", b"application/json"), (b"x-custom", b"1"))
    assert options.content_length == 12 and options.content_type == b"application/json"


def test_defaults_are_the_declared_ones():
    options = parse_request_options([(b"x-portkey-provider", b"openai")])
    expected = RequestOptions(provider="openai", trace_id=options.trace_id)
    assert options == expected and len(options.trace_id) == 32 and not options.trace_id_given


def test_every_option_is_read():
    options = parse_request_options([
        (b"x-portkey-api-key", KEY), (b"x-portkey-provider", b"azure-openai"), (b"x-portkey-config", b"pc-1"),
        (b"x-portkey-trace-id", b"t-9"), (b"x-portkey-metadata", b'{"user":"a"}'),
        (b"x-portkey-custom-host", b"https://h.example/v1"), (b"x-portkey-forward-headers", b"X-A, x-b"),
        (b"x-portkey-request-timeout", b"1500"), (b"x-portkey-cache-force-refresh", b"true"),
        (b"x-portkey-strict-open-ai-compliance", b"true"), (b"x-portkey-azure-resource-name", b"res"),
    ])
    assert options.api_key == KEY.decode() and options.provider == "azure-openai" and options.config == "pc-1"
    assert options.trace_id == "t-9" and options.trace_id_given and options.metadata == {"user": "a"}
    assert options.custom_host == "https://h.example/v1" and options.forward_headers == {b"x-a", b"x-b"}
    assert options.request_timeout == 1.5 and options.cache_force_refresh and options.strict_compliance
    assert options.provider_settings == {"resource_name": "res"}


def test_a_bad_option_is_a_clear_error():
    with pytest.raises(InvalidHeader, match="milliseconds"):
        parse_request_options([(b"x-portkey-request-timeout", b"soon")])
