"""Two nodes given one signing secret sign alike: a stream link made on one opens on the other. Without it,
each data dir signs with its own random key and the other node refuses the link."""

from __future__ import annotations

import secrets
import subprocess
import sys

import httpx
import pytest

from .conftest import REPLICATE_TOKEN, replicate_provider
from .harness import GatewayProcess

SLUG = {"x-portkey-provider": "@replicate-test"}


def two_nodes(tmp_path, fake_replicate, env: dict[str, str]) -> tuple[GatewayProcess, GatewayProcess]:
    providers = [replicate_provider(fake_replicate[0].url)]
    env = {"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, **env}
    nodes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        nodes.append(GatewayProcess(tmp_path / name / "data", providers=providers, env=env))
    return nodes[0], nodes[1]


def stream_link(node: GatewayProcess) -> str:
    created = httpx.post(node.v1 + "/models/test/llm/predictions", headers=node.headers(**SLUG), timeout=20,
                         json={"input": {"prompt": "one two"}, "stream": True})
    assert created.status_code == 201, created.text
    return created.json()["urls"]["stream"]


def opens_on(node: GatewayProcess, link: str) -> int:
    token = link.rsplit("/", 1)[1]
    with httpx.stream("GET", f"{node.v1}/streams/{token}", headers={"Accept": "text/event-stream"}, timeout=20) as r:
        return r.status_code


@pytest.mark.parametrize("shared, expected", [(True, 200), (False, 404)])
def test_a_stream_link_opens_on_another_node_only_with_the_same_secret(tmp_path, fake_replicate, shared, expected):
    env = {"MODELPORT_SIGNING_SECRET": secrets.token_urlsafe(32)} if shared else {}
    node_a, node_b = two_nodes(tmp_path, fake_replicate, env)
    with node_a, node_b:
        link = stream_link(node_a)
        assert opens_on(node_a, link) == 200
        assert opens_on(node_b, link) == expected
    assert (node_a.data_dir / "stream-signing.key").exists() is not shared  # a secret given: no key file made


def test_a_short_signing_secret_is_refused_at_start(tmp_path):
    result = subprocess.run([sys.executable, "-m", "modelport", "serve", "--data-dir", str(tmp_path)],
                            env={"MODELPORT_SIGNING_SECRET": "too-short", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "signing_secret must be at least 32 characters" in result.stderr
    assert "too-short" not in result.stderr
