"""The admin CLI (keys, providers, configs, vault), run as a separate process like an operator would."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import modelport.store
from modelport.keys import hash_api_key
from modelport.store import DB_FILE_NAME, open_sqlite_store
from modelport.store.migrations import apply_migrations
from modelport.vault import KEY_FILE_NAME, key_id
from tests.harness import first_line_then_hang_up

SRC = str(Path(modelport.store.__file__).resolve().parents[2])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory as `modelport serve` leaves it: the database made (the master key is made on first use)."""
    path = tmp_path / "data"
    path.mkdir()
    initialise_database(path)
    return path


def initialise_database(data_dir: Path) -> None:
    conn = sqlite3.connect(data_dir / DB_FILE_NAME)
    apply_migrations(conn)
    conn.close()


@pytest.fixture
def modelport(data_dir: Path):
    """Run ``python -m modelport ARGS... --data-dir <tmp>``; returns the finished process."""

    def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
        full_env = {**clean_environment(), **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "modelport", *args, "--data-dir", str(data_dir)],
            env=full_env, input=stdin or "", capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    return run


def clean_environment() -> dict[str, str]:
    """This environment without MODELPORT_* settings, with ModelPort importable."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}, "PYTHONPATH": SRC}


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def as_json(result: subprocess.CompletedProcess):
    return json.loads(ok(result).stdout)


def listed(result: subprocess.CompletedProcess) -> list:
    page = as_json(result)
    assert page["object"] == "list" and page["next_cursor"] is None
    return page["data"]


# -- keys ----------------------------------------------------------------------------------------
def test_a_key_created_on_the_command_line_authenticates(modelport, data_dir: Path) -> None:
    ok(modelport("providers", "add", "team-a", "--provider", "openai", "--no-secret"))
    created = as_json(
        modelport("keys", "create", "--name", "ci", "--scope", "inference", "--scope", "logs.read",
                  "--provider", "@team-a", "--expires-in", "30d", "--metadata", '{"team": "ml"}', "--json")
    )  # fmt: skip
    assert created["secret"].startswith("mp-") and "key_hash" not in created
    store = open_sqlite_store(data_dir)
    record = store.get_api_key_by_hash(hash_api_key(created["secret"]))
    assert record.id == created["id"] and record.scopes == ("inference", "logs.read")
    assert record.allowed_providers == ("@team-a",) and record.metadata == {"team": "ml"}
    assert record.expires_at is not None and record.is_active()
    store.close()


def test_the_key_secret_is_printed_once_and_never_listed(modelport) -> None:
    out = ok(modelport("keys", "create", "--name", "laptop")).stdout
    secret = next(word for word in out.split() if word.startswith("mp-"))
    listing = ok(modelport("keys", "list")).stdout + ok(modelport("keys", "list", "--json")).stdout
    assert "laptop" in listing and secret not in listing and secret[:10] in listing


def test_revoking_from_the_command_line_reaches_a_running_gateway(modelport, data_dir: Path) -> None:
    gateway = open_sqlite_store(data_dir)  # as a running gateway process holds it
    record, token = gateway.create_api_key("shared")
    version = gateway.data_version()
    ok(modelport("keys", "revoke", record.id))
    assert gateway.data_version() != version
    assert not gateway.get_api_key_by_hash(hash_api_key(token)).is_active()
    assert "revoked" in ok(modelport("keys", "list")).stdout
    gateway.close()


def test_rotating_a_key_prints_a_new_secret_and_the_old_one_stops_working(modelport, data_dir: Path) -> None:
    created = as_json(modelport("keys", "create", "--name", "svc", "--json"))
    rotated = as_json(modelport("keys", "rotate", created["id"], "--json"))
    assert rotated["id"] == created["id"] and rotated["secret"] != created["secret"]
    store = open_sqlite_store(data_dir)
    assert store.get_api_key_by_hash(hash_api_key(created["secret"])) is None
    assert store.get_api_key_by_hash(hash_api_key(rotated["secret"])).id == created["id"]
    store.close()
    ok(modelport("keys", "delete", created["id"]))
    assert listed(modelport("keys", "list", "--json")) == []


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_a_closed_pipe_ends_keys_list_quietly(modelport, data_dir: Path, json_flag) -> None:
    store = open_sqlite_store(data_dir)
    for n in range(1000):  # ~120 KB of table: more than a pipe holds
        store.create_api_key(f"service-key-{n:04d}")
    store.close()
    command = [sys.executable, "-m", "modelport", "keys", "list", *json_flag, "--data-dir", str(data_dir)]
    first, code, stderr = first_line_then_hang_up(command, clean_environment())
    assert first.split()[:2] in (["ID", "NAME"], ["{"])
    assert (code, stderr) == (0, "")


def test_a_key_is_named_positionally_or_with_name(modelport) -> None:
    assert as_json(modelport("keys", "create", "my-app", "--json"))["name"] == "my-app"
    assert as_json(modelport("keys", "create", "--name", "ci", "--json"))["name"] == "ci"
    assert as_json(modelport("keys", "create", "same", "--name", "same", "--json"))["name"] == "same"
    for args, says in ((("a", "--name", "b"), "two different names"), ((), "give a name")):
        result = modelport("keys", "create", *args)
        assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr
    assert [key["name"] for key in listed(modelport("keys", "list", "--json"))] == ["my-app", "ci", "same"]


def test_a_keys_limits_are_set_updated_and_checked_as_the_api_does(modelport) -> None:
    limits = ["--rate-limits", '{"type": "requests", "unit": "rpm", "value": 5}', "--usage-limits", '{"credit_limit": 3}']
    ok(modelport("keys", "create", "limited", *limits))
    (key,) = [k for k in listed(modelport("keys", "list", "--json")) if k["name"] == "limited"]
    assert key["rate_limits"] == [{"type": "requests", "unit": "rpm", "value": 5}]
    assert key["usage_limits"] == {"credit_limit": 3}
    updated = as_json(modelport("keys", "update", "limited", "--usage-limits", "null", "--name", "renamed", "--json"))
    assert (updated["name"], updated["usage_limits"], updated["rate_limits"]) == ("renamed", None, key["rate_limits"])
    refused = modelport("keys", "update", "renamed", "--rate-limits", '{"type": "requests", "unit": "rps", "value": 1}')
    assert refused.returncode == 2 and "--rate-limits[0].unit" in refused.stderr
    usage = listed(modelport("keys", "usage", "renamed", "--json"))
    assert [(row["type"], row["unit"], row["value"], row["used"]) for row in usage] == [("requests", "rpm", 5, 0)]


def test_errors_are_one_line_and_exit_non_zero(modelport) -> None:
    for args in (("keys", "revoke", "key_missing"), ("keys", "create", "--name", " ")):
        result = modelport(*args)
        assert result.returncode == 1
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert modelport("keys", "create", "--name", "x", "--scope", "everything").returncode == 2


# -- providers -----------------------------------------------------------------------------------
def test_a_provider_secret_comes_from_the_environment_and_is_never_printed(modelport, data_dir: Path) -> None:
    secret = "r8_test_token_from_env"
    added = ok(modelport("providers", "add", "team-rep", "--provider", "replicate", "--secret-env", "REP_TOKEN",
                         "--model", "meta/llama", env={"REP_TOKEN": secret}))  # fmt: skip
    shown = ok(modelport("providers", "show", "team-rep")).stdout + ok(modelport("providers", "list", "--json")).stdout
    assert secret not in added.stdout + added.stderr + shown
    assert "r8…nv" in shown
    store = open_sqlite_store(data_dir)
    resolved = store.resolve_provider("team-rep")
    assert (resolved.secret, resolved.settings, resolved.allowed_models) == (
        secret, {}, {"meta/llama"})
    store.close()


def test_a_setting_the_provider_does_not_read_is_refused_not_stored(modelport) -> None:
    # Azure's api_version on Replicate would be stored and applied by nothing.
    refused = modelport("providers", "add", "team-rep2", "--provider", "replicate", "--no-secret",
                        "--setting", "api_version=2024-06-01")  # fmt: skip
    assert refused.returncode == 2  # a usage error, as other refused arguments
    assert "'api_version' is not a setting of provider 'replicate'; it takes none" in refused.stderr
    assert modelport("providers", "show", "team-rep2").returncode != 0


def test_a_provider_secret_can_be_piped_on_standard_input(modelport, data_dir: Path) -> None:
    ok(modelport("providers", "add", "team-oai", "--provider", "openai", stdin="sk-test-piped\n"))
    store = open_sqlite_store(data_dir)
    assert store.resolve_provider("team-oai").secret == "sk-test-piped"
    store.close()


def test_a_provider_without_a_secret_source_is_refused(modelport) -> None:
    result = modelport("providers", "add", "empty", "--provider", "openai")
    assert result.returncode == 1 and "no secret" in result.stderr
    result = modelport("providers", "add", "unset", "--provider", "openai", "--secret-env", "NOT_SET_ANYWHERE")
    assert result.returncode == 1 and "NOT_SET_ANYWHERE" in result.stderr
    ok(modelport("providers", "add", "local", "--provider", "ollama", "--no-secret", "--custom-host",
                 "http://127.0.0.1:11434", env={"MODELPORT_TRUSTED_HOSTS": "127.0.0.1"}))  # fmt: skip


def test_a_stored_host_passes_the_ssrf_rules_unless_the_operator_trusts_it(modelport, data_dir: Path) -> None:
    # As the API refuses it (tests/test_stored_provider_hosts.py): the stored secret would go there.
    ok(modelport("providers", "add", "pub", "--provider", "openai", "--no-secret"))
    for args in (("providers", "add", "local", "--provider", "ollama", "--no-secret"), ("providers", "update", "pub")):
        refused = modelport(*args, "--custom-host", "http://10.0.0.5:11434/v1")
        assert refused.returncode == 2 and "private or local address" in refused.stderr
        assert "trusted_hosts" in refused.stderr
    trusted = {"MODELPORT_TRUSTED_HOSTS": "10.0.0.0/8"}
    ok(modelport("providers", "add", "local", "--provider", "ollama", "--no-secret", "--custom-host",
                 "http://10.0.0.5:11434/v1", env=trusted))  # fmt: skip
    ok(modelport("providers", "update", "pub", "--custom-host", "http://10.0.0.6/v1", env=trusted))
    store = open_sqlite_store(data_dir)
    assert [store.get_provider(slug).custom_host for slug in ("local", "pub")] == [
        "http://10.0.0.5:11434/v1", "http://10.0.0.6/v1"]
    store.close()


def test_providers_built_on_an_integration(modelport, data_dir: Path) -> None:
    env = {"ORG_KEY": "sk-test-org-anthropic"}
    ok(modelport("providers", "add", "org-ant", "--kind", "integration", "--provider", "anthropic",
                 "--secret-env", "ORG_KEY", env=env))  # fmt: skip
    ok(modelport("providers", "add", "team-ant", "--integration", "org-ant", "--note", "team budget"))
    rows = {row["slug"]: row for row in listed(modelport("providers", "list", "--json"))}
    assert rows["team-ant"]["provider"] == "anthropic" and rows["team-ant"]["integration_slug"] == "org-ant"
    removal = modelport("providers", "remove", "org-ant")
    assert removal.returncode == 1 and "team-ant" in removal.stderr
    ok(modelport("providers", "remove", "team-ant"))
    ok(modelport("providers", "remove", "org-ant"))
    assert listed(modelport("providers", "list", "--json")) == []


def test_human_tables_are_aligned(modelport) -> None:
    ok(modelport("providers", "add", "a", "--provider", "openai", "--no-secret"))
    ok(modelport("providers", "add", "much-longer-slug", "--provider", "replicate", "--no-secret"))
    lines = ok(modelport("providers", "list")).stdout.splitlines()
    assert lines[0].split()[:3] == ["SLUG", "KIND", "PROVIDER"]
    column = lines[0].index("KIND")
    assert all(line[column:].startswith("provider") for line in lines[1:]) and len(lines) == 3


def test_a_provider_is_updated_in_place_by_the_same_rules(modelport, data_dir: Path) -> None:
    ok(modelport("providers", "add", "az", "--provider", "azure-openai", "--secret-env", "S", "--setting",
                 "resource_name=team-res", env={"S": "sk-test-old"}))  # fmt: skip
    refused = modelport("providers", "update", "az", "--setting", "resource_name=")
    assert refused.returncode == 2 and "needs --setting resource_name=" in refused.stderr
    assert modelport("providers", "update", "az").returncode == 2  # nothing to change is a mistake, not a no-op
    updated = as_json(modelport(
        "providers", "update", "@az", "--name", "Azure team", "--setting", "api_version=2024-06-01",
        "--custom-host", "https://team-res.example.com/openai/", "--model", "gpt-4o", "--note", "eu",
        "--rate-limits", '{"type": "requests", "unit": "rpm", "value": 60}', "--secret-env", "S", "--json",
        env={"S": "sk-test-new"}))  # fmt: skip
    assert updated["settings"] == {"resource_name": "team-res", "api_version": "2024-06-01"}
    assert (updated["name"], updated["custom_host"], updated["note"]) == (
        "Azure team", "https://team-res.example.com/openai", "eu")
    assert updated["rate_limits"] == [{"type": "requests", "unit": "rpm", "value": 60}]
    store = open_sqlite_store(data_dir)
    assert store.resolve_provider("az").secret == "sk-test-new"
    store.close()
    budget = as_json(modelport("providers", "update", "az", "--usage-limits", '{"credit_limit": 50}', "--json"))
    assert (budget["usage_limits"], budget["usage_reset_at"]) == ({"credit_limit": 50}, None)
    refused = modelport("providers", "update", "az", "--usage-limits", '{"credit_limit": "fifty"}')
    assert refused.returncode == 2 and "--usage-limits.credit_limit" in refused.stderr
    assert as_json(modelport("providers", "update", "az", "--reset-usage", "--json"))["usage_reset_at"] is not None
    cleared = as_json(modelport("providers", "update", "az", "--custom-host", "", "--note", "", "--all-models",
                                "--rate-limits", "null", "--usage-limits", "null", "--json"))  # fmt: skip
    assert [cleared[name] for name in ("custom_host", "note", "allowed_models", "rate_limits", "usage_limits")] == [
        None, None, [], None, None]


def test_records_are_found_by_name_or_at_slug_as_well_as_id(modelport) -> None:
    ok(modelport("providers", "add", "team-rep", "--name", "Team Replicate", "--provider", "replicate", "--no-secret"))
    assert as_json(modelport("providers", "show", "@team-rep", "--json"))["slug"] == "team-rep"
    assert as_json(modelport("providers", "show", "Team Replicate", "--json"))["slug"] == "team-rep"
    first = as_json(modelport("keys", "create", "svc", "--json"))
    second = as_json(modelport("keys", "create", "svc", "--json"))
    solo = as_json(modelport("keys", "create", "solo", "--json"))
    assert as_json(modelport("keys", "rotate", "solo", "--json"))["id"] == solo["id"]
    ambiguous = modelport("keys", "revoke", "svc")
    assert ambiguous.returncode == 1
    assert "2 keys are named 'svc'" in ambiguous.stderr and first["id"] in ambiguous.stderr
    assert second["id"] in ambiguous.stderr and "give the id" in ambiguous.stderr
    ok(modelport("keys", "revoke", first["id"]))
    statuses = {key["id"]: key["revoked_at"] for key in listed(modelport("keys", "list", "--json"))}
    assert statuses[first["id"]] is not None and statuses[second["id"]] is None  # the ambiguous call revoked none
    ok(modelport("configs", "create", "retry twice", "--slug", "retry", "--data", '{"retry": {"attempts": 2}}'))
    assert as_json(modelport("configs", "show", "retry twice", "--json"))["slug"] == "retry"
    ok(modelport("configs", "delete", "retry twice"))
    ok(modelport("providers", "remove", "Team Replicate"))
    missing = modelport("providers", "show", "@team-rep")
    assert missing.returncode == 1 and "no stored provider with the slug or name '@team-rep'" in missing.stderr


# -- configs -------------------------------------------------------------------------------------
def test_configs_are_saved_listed_shown_and_deleted(modelport, tmp_path: Path) -> None:
    body = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "@a"}, {"provider": "@b"}]}
    path = tmp_path / "fallback.json"
    path.write_text(json.dumps(body))
    saved = as_json(
        modelport("configs", "create", "--name", "fallback", "--slug", "prod", "--file", str(path), "--default",
                  "--json")  # fmt: skip
    )
    assert saved["id"].startswith("pc-") and saved["is_default"] is True
    inline = as_json(
        modelport("configs", "create", "--name", "retry", "--data", '{"retry": {"attempts": 3}}', "--json")
    )
    assert as_json(modelport("configs", "show", "prod", "--json"))["config"] == body
    assert as_json(modelport("configs", "show", inline["id"], "--json"))["config"] == {"retry": {"attempts": 3}}
    assert [c["slug"] for c in listed(modelport("configs", "list", "--json"))] == ["prod", inline["id"]]
    ok(modelport("configs", "delete", "prod"))
    assert modelport("configs", "show", "prod").returncode == 1
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert modelport("configs", "create", "--name", "bad", "--file", str(bad)).returncode == 1


# -- the control plane's rules -------------------------------------------------------------------
# Each is refused by the API too (tests/test_control_plane.py, test_invalid_input_is_a_clear_400).
@pytest.mark.parametrize("args, says", [
    (("providers", "add", "p", "--provider", "no-such-provider", "--no-secret"), "--provider must be one of"),
    (("providers", "add", "az", "--provider", "azure-openai", "--no-secret"), "needs --setting resource_name="),
    (("providers", "add", "p", "--provider", "openai", "--no-secret", "--setting", "region=eu"),
     "'region' is not a setting of provider 'openai'"),
    (("providers", "add", "p", "--provider", "openai", "--no-secret", "--custom-host", "ftp://x"), "--custom-host"),
    (("providers", "add", "p", "--provider", "openai", "--no-secret", "--rate-limits", '{"per": "second"}'),
     "--rate-limits"),
    (("configs", "create", "bad", "--data", '{"retry": {"attempts": "three"}}'), "config.retry.attempts"),
    (("configs", "create", "k", "--data", '{"provider": "openai", "api_key": "sk-test"}'), "cannot hold a provider key"),
    (("keys", "create", "k", "--provider", "no-such-provider"), "neither a provider id"),
    (("keys", "create", "k", "--provider", "@no-such-slug"), "no stored provider '@no-such-slug'"),
])  # fmt: skip
def test_what_the_api_refuses_the_cli_refuses_and_stores_nothing(modelport, data_dir: Path, args, says) -> None:
    result = modelport(*args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("error: ") and says in result.stderr and len(result.stderr.splitlines()) == 1
    store = open_sqlite_store(data_dir)
    assert [page.items for page in (store.list_providers(), store.list_configs(), store.list_api_keys())] == [(), (), ()]
    store.close()


def test_a_key_may_be_limited_to_a_stored_provider(modelport) -> None:
    ok(modelport("providers", "add", "team-a", "--provider", "openai", "--no-secret"))
    result = modelport("keys", "create", "k", "--provider", "team-a")
    assert result.returncode == 2 and "write a stored provider as '@team-a'" in result.stderr
    created = as_json(modelport("keys", "create", "k", "--provider", "@team-a", "--provider", "replicate", "--json"))
    assert created["allowed_providers"] == ["@team-a", "replicate"]


# -- --json ----------------------------------------------------------------------------------------
def test_json_has_one_shape_for_lists_and_one_for_errors(modelport, data_dir: Path) -> None:
    ok(modelport("keys", "create", "k"))
    logs = subprocess.run([sys.executable, "-m", "modelport", "logs", "list", "--json", "--data-dir", str(data_dir)],
                          env=clean_environment(), capture_output=True, text=True, timeout=60)  # fmt: skip
    for command in (("keys", "list"), ("providers", "list"), ("configs", "list")):
        assert as_json(modelport(*command, "--json")).keys() == json.loads(ok(logs).stdout).keys()
    for args, code in ((("keys", "revoke", "nobody"), 1), (("keys", "create", "k", "--provider", "@none"), 2),
                       (("logs", "show", "log_none"), 1)):  # fmt: skip
        result = modelport(*args, "--json")
        assert (result.returncode, result.stdout) == (code, "")
        assert list(json.loads(result.stderr)) == ["error"] and json.loads(result.stderr)["error"]["message"]


# -- the data directory --------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("keys", "list"), ("keys", "create", "k"), ("providers", "list"), ("configs", "list"), ("vault", "rotate"),
    ("providers", "add", "p", "--provider", "openai", "--no-secret"),
])  # fmt: skip
def test_no_command_but_serve_creates_a_database(tmp_path: Path, args) -> None:
    elsewhere = tmp_path / "not-the-data-dir"
    command = [sys.executable, "-m", "modelport", *args, "--data-dir", str(elsewhere)]
    result = subprocess.run(command, env=clean_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == (f"error: no database at {elsewhere / DB_FILE_NAME}: pass the --data-dir the gateway "
                             "runs with (`modelport serve` creates it on first start)\n")  # fmt: skip
    assert not elsewhere.exists()  # no database, no master key, not even the directory
    empty = tmp_path / "empty"
    empty.mkdir()
    command[-1] = str(empty)
    assert subprocess.run(command, env=clean_environment(), capture_output=True, timeout=60).returncode == 1
    assert list(empty.iterdir()) == []


# -- vault ---------------------------------------------------------------------------------------
def test_vault_rotation_with_the_key_file(modelport, data_dir: Path) -> None:
    ok(modelport("providers", "add", "p", "--provider", "openai", "--secret-env", "S", env={"S": "sk-test-rotate"}))
    before = (data_dir / KEY_FILE_NAME).read_text()
    result = as_json(modelport("vault", "rotate", "--json"))
    assert result["reencrypted"] == 1 and "master_key" not in result
    after = (data_dir / KEY_FILE_NAME).read_text()
    assert after != before and len(after.split()) == 1
    store = open_sqlite_store(data_dir)
    assert store.resolve_provider("p").secret == "sk-test-rotate"
    store.close()


def test_vault_rotation_with_a_master_key_from_the_environment(modelport, data_dir: Path) -> None:
    old = base64.b64encode(bytes(32)).decode()
    new = base64.b64encode(bytes(range(32))).decode()
    env = {"MODELPORT_MASTER_KEY": old, "S": "sk-test-env-rotate", "NEW_KEY": new}
    ok(modelport("providers", "add", "p", "--provider", "openai", "--secret-env", "S", env=env))
    result = as_json(modelport("vault", "rotate", "--new-key-env", "NEW_KEY", "--json", env=env))
    assert result == {"reencrypted": 1, "key_id": key_id(bytes(range(32))), "key_file": ""}
    assert not (data_dir / KEY_FILE_NAME).exists()
    store = open_sqlite_store(data_dir, new)
    assert store.resolve_provider("p").secret == "sk-test-env-rotate"
    store.close()
    # Without --new-key-env a key is generated and handed to the operator, who must set it.
    out = ok(modelport("vault", "rotate", env={"MODELPORT_MASTER_KEY": new})).stdout
    generated = out.split("Set MODELPORT_MASTER_KEY to ")[1].split()[0]
    store = open_sqlite_store(data_dir, generated)
    assert store.resolve_provider("p").secret == "sk-test-env-rotate"
    store.close()


def test_the_interactive_secret_prompt_does_not_echo(data_dir: Path) -> None:
    controller, terminal = pty.openpty()
    env = clean_environment()
    command = [sys.executable, "-m", "modelport", "providers", "add", "typed", "--provider", "openai",
               "--data-dir", str(data_dir)]  # fmt: skip
    # A new session has no /dev/tty, so getpass turns echo off on the pty it was given as stdin.
    proc = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True)
    os.close(terminal)
    screen = read_terminal(controller, until=b"input hidden")
    os.write(controller, b"sk-test-typed-secret\n")
    assert proc.wait(timeout=60) == 0
    screen += read_terminal(controller)
    os.close(controller)
    assert b"Secret for @typed" in screen and b"Stored provider @typed" in screen
    assert b"sk-test-typed-secret" not in screen
    store = open_sqlite_store(data_dir)
    assert store.resolve_provider("typed").secret == "sk-test-typed-secret"
    store.close()


def read_terminal(fd: int, until: bytes | None = None, timeout: float = 30) -> bytes:
    seen = b""
    while until is None or until not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_commands_find_the_store_through_the_config_file(tmp_path: Path) -> None:
    data_dir, master_key = tmp_path / "elsewhere", base64.b64encode(bytes(range(32))).decode()
    data_dir.mkdir()
    initialise_database(data_dir)
    config = tmp_path / "modelport.toml"
    config.write_text(f'data_dir = "{data_dir}"\nmaster_key = "{master_key}"\n')
    env = {**clean_environment(), "S": "sk-test-c"}
    command = [sys.executable, "-m", "modelport", "providers", "add", "p", "--provider", "openai", "--secret-env", "S",
               "--config", str(config)]  # fmt: skip
    ok(subprocess.run(command, env=env, capture_output=True, text=True, timeout=60))
    store = open_sqlite_store(data_dir, master_key)
    assert store.resolve_provider("p").secret == "sk-test-c"
    store.close()
    assert not (data_dir / KEY_FILE_NAME).exists()
