"""What the rate-limit and budget suites share: a fake OpenAI of their own (its delay and failures are
theirs to script), a two-worker gateway, and helpers that create keys and providers over the API."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import OPENAI_KEY
from tests.fakes.openai import make_openai_app
from tests.fakes.server import FakeServer
from tests.harness import GatewayProcess


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeServer, Any]]:
    app = make_openai_app(api_key=OPENAI_KEY)
    with FakeServer(app) as server:
        yield server, app["openai"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("limits") / "data", workers=2) as process:
        yield process


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=30) as client:
        yield client


def add_provider(admin: httpx.Client, upstream, slug: str, **fields: Any) -> None:
    """A stored OpenAI provider on the suite's fake, created through the control plane."""
    server, _ = upstream
    body = {"name": slug, "slug": slug, "provider": "openai", "key": OPENAI_KEY, "custom_host": server.url + "/v1",
            **fields}
    answer = admin.post("/virtual-keys", json=body)
    assert answer.status_code == 200, answer.text


def add_key(admin: httpx.Client, name: str, **fields: Any) -> tuple[str, str]:
    """An inference key: (its secret, its id)."""
    answer = admin.post("/api-keys", json={"name": name, "scopes": ["inference"], **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()["key"], answer.json()["id"]
