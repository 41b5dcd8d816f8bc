"""``modelport logs predictions``, run as a separate process like an operator would, over what a running
gateway recorded of real predictions: the same rows as ``GET /v1/logs/predictions``, and one prediction
with its lifecycle."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.test_cli_logs import ok, run
from tests.test_prediction_view import ended
from tests.test_replicate_cost import CPU, client, run_to_end, start_gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_replicate, fake_openai):
    process = start_gateway(tmp_path_factory.mktemp("cli-predictions"), fake_replicate, fake_openai,
                            {"models": {"test/echo": "cpu"}})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin(gateway):
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=20) as http:
        yield http


@pytest.fixture(scope="module")
def finished(gateway, admin) -> dict:
    prediction = run_to_end(gateway, "/models/test/echo/predictions", {"input": {"text": "for the cli"}})
    return ended(admin, prediction["id"], records=4)


def test_the_list_is_what_the_api_answers(gateway, admin, finished):
    with client(gateway) as http:
        running = http.post("/models/test/echo/predictions", json={"input": {"text": "not polled"}}).json()
    printed = orjson.loads(ok(run(gateway.data_dir, "predictions", "--json")))
    assert printed == admin.get("/logs/predictions").json()
    assert [p["id"] for p in printed["data"][:2]] == [running["id"], finished["id"]]
    only_ended = orjson.loads(ok(run(gateway.data_dir, "predictions", "--json", "--status", "succeeded", "--since", "1h")))
    assert only_ended == admin.get("/logs/predictions", params={"status": "succeeded"}).json()
    assert running["id"] not in [p["id"] for p in only_ended["data"]]

    table = ok(run(gateway.data_dir, "predictions", "--model", "test/echo")).splitlines()
    assert table[0].split() == ["CREATED", "ID", "STATUS", "MODEL", "PREDICT", "COST", "KEY"]
    [done] = [line for line in table if finished["id"] in line]
    assert "succeeded" in done and "test/echo" in done and "1.5 s" in done and f"${1.5 * CPU:.6f}" in done
    assert finished["key_id"] in done
    [pending] = [line for line in table if running["id"] in line]
    assert "running" in pending and "unpriced" not in pending

    first = ok(run(gateway.data_dir, "predictions", "--limit", "1")).splitlines()
    assert running["id"] in first[1] and first[-1].startswith("More: modelport logs predictions --cursor ")
    cursor = first[-1].split("--cursor ")[1].split()[0]
    assert finished["id"] in ok(run(gateway.data_dir, "predictions", "--limit", "1", "--cursor", cursor)).splitlines()[1]
    assert ok(run(gateway.data_dir, "predictions", "--model", "test/none")).strip() == "No predictions match."


def test_one_prediction_shows_its_cost_and_lifecycle(gateway, admin, finished):
    printed = orjson.loads(ok(run(gateway.data_dir, "predictions", finished["id"], "--json")))
    assert printed == admin.get(f"/logs/predictions/{finished['id']}").json()
    text = ok(run(gateway.data_dir, "predictions", finished["id"]))
    assert text.startswith(f"{finished['id']}  succeeded")
    assert f"${1.5 * CPU:.6f} (cpu × 1.5 s)" in text and "1.5 s" in text
    steps = text.split("Lifecycle:\n")[1].splitlines()
    assert [line.split()[1] for line in steps] == ["create", "poll", "poll", "poll"]
    assert [i for i, line in enumerate(steps) if "end seen, priced here" in line] == [2]
    assert finished["ended_on_log_id"] in steps[2] and "saw succeeded" in steps[2]
    assert "POST /v1/models/test/echo/predictions  → 201  saw starting" in steps[0]


@pytest.mark.parametrize(("args", "code", "message"), [
    (("p-never-seen",), 1, "no prediction 'p-never-seen'"),
    (("p-never-seen", "--status", "failed"), 1, "not both"),
    (("--status", "done"), 2, "invalid choice"),
    (("--limit", "0"), 1, "--limit must be between 1 and 1000"),
    (("--cursor", "nope"), 1, "invalid cursor"),
])  # fmt: skip
def test_a_wrong_request_is_refused_with_a_reason(gateway, args, code, message):
    result = run(gateway.data_dir, "predictions", *args)
    assert result.returncode == code and message in result.stderr and result.stdout == ""
