"""Shared fixtures: fake upstreams as real servers, and the gateway as a real process in front of them."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import GatewayProcess, free_port

REPLICATE_TOKEN = "r8_test_token"
OPENAI_KEY = "sk-test-openai"
ANTHROPIC_KEY = "sk-ant-test-key"
GEMINI_KEY = "gemini-test-key"
COHERE_KEY = "cohere-test-key"


@pytest.fixture(scope="session")
def fake_replicate():
    from tests.fakes.replicate import start_fake_replicate

    server, state = start_fake_replicate(token=REPLICATE_TOKEN)
    yield server, state
    server.stop()


@pytest.fixture(scope="session")
def fake_openai():
    from tests.fakes.openai import make_openai_app
    from tests.fakes.server import FakeServer

    app = make_openai_app(api_key=OPENAI_KEY)
    with FakeServer(app) as server:
        yield server, app["openai"]


def replicate_provider(fake_url: str, slug: str = "replicate-test") -> dict:
    return {"slug": slug, "provider": "replicate", "secret_env": "TEST_REPLICATE_TOKEN", "custom_host": fake_url + "/v1"}


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_replicate, fake_openai) -> Iterator[GatewayProcess]:
    """The default gateway: keys required, private custom hosts refused, stored providers on the fakes."""
    replicate_server, _ = fake_replicate
    openai_server, _ = fake_openai
    providers = [
        replicate_provider(replicate_server.url),
        {"slug": "openai-test", "provider": "openai", "secret_env": "TEST_OPENAI_KEY", "custom_host": openai_server.url + "/v1"},
        replicate_provider(f"http://127.0.0.1:{free_port()}", slug="replicate-down"),  # nothing listens there
    ]
    env = {"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, "TEST_OPENAI_KEY": OPENAI_KEY}
    process = GatewayProcess(tmp_path_factory.mktemp("gw") / "data", providers=providers, env=env)
    with process:
        yield process


@pytest.fixture(scope="session")
def open_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Portkey's open-source behaviour: no gateway key, caller brings its provider key, any host."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("open") / "data",
        settings={"require_api_key": False, "allow_private_hosts": True},
    )
    with process:
        yield process


def data_dir_of(process: GatewayProcess) -> Path:
    return process.data_dir
