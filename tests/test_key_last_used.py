"""A key's ``last_used_at`` is written when it is used (batched off the request path) and shown by the
control plane and the CLI; a key never used stays ``null``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Iterator

import httpx
import pytest

from tests.harness import GatewayProcess
from tests.test_cli_admin import clean_environment


@pytest.fixture(scope="module")
def own_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("lastused") / "data", workers=2)
    with process:
        yield process


def test_a_used_key_shows_when_it_was_last_used(own_gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=own_gateway.v1, headers=own_gateway.headers(), timeout=20) as admin:
        used = admin.post("/api-keys", json={"name": "used", "scopes": ["inference"]}).json()
        idle = admin.post("/api-keys", json={"name": "idle", "scopes": ["inference"]}).json()
        before = datetime.now(timezone.utc).replace(microsecond=0)
        for _ in range(4):  # the workers take turns: every one records what it saw
            answer = httpx.post(own_gateway.v1 + "/chat/completions", json={}, headers={"x-portkey-api-key": used["key"]})
            assert answer.status_code == 400  # authenticated, then refused for naming no provider
        deadline = time.monotonic() + 15
        while (got := admin.get(f"/api-keys/{used['id']}").json())["last_used_at"] is None:
            assert time.monotonic() < deadline, "last_used_at was never written"
            time.sleep(0.25)
        assert before <= datetime.fromisoformat(got["last_used_at"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
        assert admin.get(f"/api-keys/{idle['id']}").json()["last_used_at"] is None

    listed = subprocess.run([sys.executable, "-m", "modelport", "keys", "list", "--json", "--data-dir",
                             str(own_gateway.data_dir)], env=clean_environment(), capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)["data"]}
    assert rows[used["id"]]["last_used_at"] is not None and rows[idle["id"]]["last_used_at"] is None
