"""Shared fixtures: fake upstreams as real servers, and the gateway as a real process in front of them."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import ADMIN_KEY, GatewayProcess, free_port

REPLICATE_TOKEN = "r8_test_token"
OPENAI_KEY = "sk-test-openai"
ANTHROPIC_KEY = "sk-ant-test-key"
GEMINI_KEY = "gemini-test-key"
COHERE_KEY = "cohere-test-key"
# Test AWS credentials the fake Bedrock knows: labelled as tests, shaped like no real key (a "/" and a
# "+" kept, as real secrets carry them and the signer must not care).
BEDROCK_KEY_ID = "MPTESTACCESSKEYID"
BEDROCK_SECRET = "test-bedrock-secret/for+the-fake-0123456"


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


def _serve(app, state_key):
    from tests.fakes.server import FakeServer

    server = FakeServer(app).start()
    return server, app[state_key]


@pytest.fixture(scope="session")
def fake_openai_backup():
    from tests.fakes.openai import make_openai_app

    server, state = _serve(make_openai_app(api_key=OPENAI_KEY), "openai")
    yield server, state
    server.stop()


@pytest.fixture(scope="session")
def fake_anthropic():
    from tests.fakes.anthropic import make_anthropic_app

    server, state = _serve(make_anthropic_app(api_key=ANTHROPIC_KEY), "anthropic")
    yield server, state
    server.stop()


@pytest.fixture(scope="session")
def fake_gemini():
    from tests.fakes.gemini import GEMINI, make_gemini_app

    server, state = _serve(make_gemini_app(api_key=GEMINI_KEY), GEMINI)
    yield server, state
    server.stop()


@pytest.fixture(scope="session")
def fake_cohere():
    from tests.fakes.cohere import COHERE, make_cohere_app

    server, state = _serve(make_cohere_app(api_key=COHERE_KEY), COHERE)
    yield server, state
    server.stop()


def replicate_provider(fake_url: str, slug: str = "replicate-test") -> dict:
    return {"slug": slug, "provider": "replicate", "secret_env": "TEST_REPLICATE_TOKEN", "custom_host": fake_url + "/v1"}


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_replicate, fake_openai, fake_openai_backup,
            fake_anthropic, fake_gemini, fake_cohere) -> Iterator[GatewayProcess]:
    """The default gateway: keys required, private custom hosts refused, stored providers on the fakes."""
    providers = [
        replicate_provider(fake_replicate[0].url),
        replicate_provider(f"http://127.0.0.1:{free_port()}", slug="replicate-down"),  # nothing listens there
        stored("openai-test", "openai", "TEST_OPENAI_KEY", fake_openai[0].url + "/v1"),
        stored("openai-backup", "openai", "TEST_OPENAI_KEY", fake_openai_backup[0].url + "/v1"),
        stored("anthropic-test", "anthropic", "TEST_ANTHROPIC_KEY", fake_anthropic[0].url + "/v1"),
        stored("gemini-test", "google", "TEST_GEMINI_KEY", fake_gemini[0].url + "/v1beta"),
        stored("cohere-test", "cohere", "TEST_COHERE_KEY", fake_cohere[0].url + "/v1"),
    ]
    env = {"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, "TEST_OPENAI_KEY": OPENAI_KEY, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY,
           "TEST_GEMINI_KEY": GEMINI_KEY, "TEST_COHERE_KEY": COHERE_KEY}
    process = GatewayProcess(tmp_path_factory.mktemp("gw") / "data", providers=providers, env=env)
    with process:
        yield process


def stored(slug: str, provider: str, secret_env: str, custom_host: str) -> dict:
    return {"slug": slug, "provider": provider, "secret_env": secret_env, "custom_host": custom_host}


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


SECRETS = {"REPLICATE_TOKEN": REPLICATE_TOKEN, "OPENAI_KEY": OPENAI_KEY, "ANTHROPIC_KEY": ANTHROPIC_KEY,
           "GEMINI_KEY": GEMINI_KEY, "COHERE_KEY": COHERE_KEY, "BEDROCK_SECRET": BEDROCK_SECRET,
           "the admin gateway key": ADMIN_KEY}
# Where a secret is meant to be on disk: the admin key file `serve` writes 0600 when no key is given.
SECRET_FILES = frozenset({"admin.key"})


@pytest.fixture(scope="session", autouse=True)
def no_secret_left_on_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole suite: no secret the suite used is in any file it left — data dirs (the
    databases, spill files, key files), gateway logs, exports, configs. Secrets are sealed or redacted,
    never written in the clear."""
    yield
    found = []
    for path in tmp_path_factory.getbasetemp().rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name not in SECRET_FILES:
            data = path.read_bytes()
            found += [f"{name} in {path}" for name, secret in SECRETS.items() if secret.encode() in data]
    assert not found, "secrets left on disk:\n" + "\n".join(found[:20])
