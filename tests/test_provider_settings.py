"""Declared provider settings (providers/base.py ``Setting``) reach the provider: a setting whose value is a
header (``upstream_header``) is sent on the unified API and on the proxy route, its default when unset."""

from __future__ import annotations

import httpx


def last_request(state):
    return state.requests[-1]


def test_openai_organization_and_project_reach_openai(gateway, fake_openai):
    _, state = fake_openai
    reply = httpx.post(gateway.v1 + "/chat/completions", timeout=10,
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                       headers=gateway.headers(**{"x-portkey-provider": "@openai-test",
                                                  "x-portkey-openai-organization": "org-team",
                                                  "x-portkey-openai-project": "proj_1"}))
    assert reply.status_code == 200, reply.text
    sent = last_request(state).headers
    assert (sent["openai-organization"], sent["openai-project"]) == ("org-team", "proj_1")


def test_a_settings_header_fills_a_gap_on_the_proxy_route(gateway, fake_openai):
    _, state = fake_openai
    reply = httpx.get(gateway.v1 + "/models", timeout=10,
                      headers=gateway.headers(**{"x-portkey-provider": "@openai-test",
                                                 "x-portkey-openai-organization": "org-proxy"}))
    assert reply.status_code == 200, reply.text
    assert last_request(state).headers["openai-organization"] == "org-proxy"
    reply = httpx.get(gateway.v1 + "/models", timeout=10,
                      headers=gateway.headers(**{"x-portkey-provider": "@openai-test", "openai-organization": "own",
                                                 "x-portkey-openai-organization": "org-proxy"}))
    assert last_request(state).headers["openai-organization"] == "own"  # the client's own header wins there


def test_anthropics_version_default_comes_from_its_declaration(gateway, fake_anthropic):
    _, state = fake_anthropic
    reply = httpx.post(gateway.v1 + "/messages", timeout=10,
                       json={"model": "claude-3-5-haiku-20241022", "max_tokens": 20,
                             "messages": [{"role": "user", "content": "hi"}]},
                       headers=gateway.headers(**{"x-portkey-provider": "@anthropic-test"}))
    assert reply.status_code == 200, reply.text
    assert last_request(state).headers["anthropic-version"] == "2023-06-01"
    httpx.get(gateway.v1 + "/models/claude-3-5-haiku-20241022", timeout=10,  # the proxy route: the same default
              headers=gateway.headers(**{"x-portkey-provider": "@anthropic-test"}))
    assert last_request(state).path == "/v1/models/claude-3-5-haiku-20241022"
    assert last_request(state).headers["anthropic-version"] == "2023-06-01"
