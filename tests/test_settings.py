"""One settings object: flags over environment over config file over defaults, with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelport.store
from modelport.settings import Settings, SettingsError, describe
from modelport.store import open_sqlite_store
from tests.harness import free_port

README = Path(__file__).parent.parent / "README.md"
SRC = str(Path(modelport.store.__file__).resolve().parents[2])


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path):
    config = tmp_path / "modelport.toml"
    config.write_text('port = 9001\nworkers = 3\nlog_level = "debug"\n')
    env = {"MODELPORT_PORT": "9002", "MODELPORT_CONFIG": str(config), "MODELPORT_ALLOW_PRIVATE_HOSTS": "yes"}
    settings = Settings.load({"port": 9003}, environ=env)
    assert (settings.port, settings.workers, settings.log_level) == (9003, 3, "debug")
    assert settings.allow_private_hosts is True
    assert Settings.load({}, environ=env).port == 9002
    assert Settings.load({}, environ={}).port == 8787


def test_config_file_in_the_data_dir_is_found(tmp_path):
    (tmp_path / "modelport.toml").write_text("workers = 2\n")
    assert Settings.load({"data_dir": str(tmp_path)}, environ={}).workers == 2


def test_declared_providers(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[providers]]\nslug = "r"\nprovider = "replicate"\nsecret_env = "X"\ncustom_host = "http://h/v1"\n')
    (declared,) = Settings.load({"config": str(config)}, environ={}).providers
    assert (declared.slug, declared.provider, declared.secret_env, declared.custom_host) == ("r", "replicate", "X", "http://h/v1")


@pytest.mark.parametrize("env, message", [
    ({"MODELPORT_PORT": "eighty"}, "setting 'port' (MODELPORT_PORT) has an invalid value 'eighty'"),
    ({"MODELPORT_REQUIRE_API_KEY": "maybe"}, "MODELPORT_REQUIRE_API_KEY"),
    ({"MODELPORT_WORKERS": "0"}, "workers must be at least 1"),
    ({"MODELPORT_PUBLIC_URL": "gateway.example.com"}, "public_url must start with http"),
    ({"MODELPORT_RESPONSES_RETENTION_DAYS": "0"}, "responses_retention_days must be a number of days of at least 1"),
])
def test_bad_values_name_the_setting(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.load({}, environ=env)


def test_config_file_errors_are_precise(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.load({"config": str(bad)}, environ={})
    bad.write_text("port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.load({"config": str(bad)}, environ={})


def test_serve_reports_bad_settings_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "modelport", "serve", "--data-dir", str(tmp_path)],
                            env={"MODELPORT_PORT": "nope", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "MODELPORT_PORT" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("declaration, says", [
    ('provider = "no-such-provider"', "provider must be one of"),
    ('provider = "azure-openai"', "provider 'azure-openai' needs settings.resource_name (or custom_host)"),
    ('provider = "openai"\nsettings = { region = "eu" }', "settings: 'region' is not a setting of provider 'openai'"),
    ('provider = "openai"\ncustom_host = "ftp://x"', "custom_host must be an absolute http(s) URL"),
])
def test_serve_refuses_declared_providers_the_api_would_refuse(tmp_path, declaration, says):
    # The config file is the third front door: the control plane's rules apply to it too.
    config = tmp_path / "c.toml"
    config.write_text(f'[[providers]]\nslug = "p"\n{declaration}\n')
    result = subprocess.run([sys.executable, "-m", "modelport", "serve", "--data-dir", str(tmp_path / "data"),
                             "--config", str(config), "--port", str(free_port())],
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SRC}, capture_output=True, text=True,
                            timeout=30)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"config file: provider 'p': {says}" in result.stderr, result.stderr
    store = open_sqlite_store(tmp_path / "data")
    assert store.list_providers().items == ()
    store.close()


def test_readme_documents_every_setting():
    readme = README.read_text()
    for env, kind, default, meaning in describe():
        assert f"| `{env}` | {kind} | `{default}` | {meaning} |" in readme, env


SHARED_SECRETS = {"MODELPORT_MASTER_KEY": "bW9kZWxwb3J0LXRlc3QtbWFzdGVyLWtleS0zMmJ5dGU=",
                  "MODELPORT_SIGNING_SECRET": "s" * 32}


@pytest.mark.parametrize("env, says", [
    ({"MODELPORT_DATABASE_URL": "postgresql://127.0.0.1/test"},
     "database_url is set, so MODELPORT_MASTER_KEY and MODELPORT_SIGNING_SECRET must be too"),
    ({"MODELPORT_DATABASE_URL": "postgresql://127.0.0.1/test", "MODELPORT_MASTER_KEY": SHARED_SECRETS["MODELPORT_MASTER_KEY"]},
     "database_url is set, so MODELPORT_SIGNING_SECRET must be too"),
    ({"MODELPORT_DATABASE_URL": "mysql://u:hunter2@127.0.0.1/test", **SHARED_SECRETS}, "must start with postgresql://"),
    ({"MODELPORT_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/test", **SHARED_SECRETS},
     "cannot connect to PostgreSQL at 127.0.0.1:1/test"),
])
def test_a_node_on_a_shared_database_refuses_to_start_in_one_line(tmp_path, env, says):
    """No secret of its own (nodes must open each other's), no malformed or unreachable URL, no password shown."""
    result = subprocess.run([sys.executable, "-m", "modelport", "serve", "--data-dir", str(tmp_path)],
                            env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "hunter2" not in result.stderr
    assert not (tmp_path / "master.key").exists() and not (tmp_path / "stream-signing.key").exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://", "redis://127.0.0.1:6379/db-one",
                                 "127.0.0.1:6379", "redis://host name:6379"])
def test_a_malformed_redis_url_is_refused_in_one_line(tmp_path, url):
    result = subprocess.run([sys.executable, "-m", "modelport", "serve", "--data-dir", str(tmp_path)],
                            env={"MODELPORT_REDIS_URL": url, "PATH": "/usr/bin:/bin",
                                 "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "redis_url (MODELPORT_REDIS_URL) must be redis://" in result.stderr


def test_redis_settings_are_read_from_the_environment():
    settings = Settings.load(environ={"MODELPORT_REDIS_URL": "rediss://user:secret@cache.example:6380/2",
                                      "MODELPORT_LIMITS_FAIL_OPEN": "true", "MODELPORT_REDIS_KEY_PREFIX": "gw-a:"})
    assert (settings.redis_url, settings.limits_fail_open, settings.redis_key_prefix) == (
        "rediss://user:secret@cache.example:6380/2", True, "gw-a:")
    assert Settings.load(environ={}).limits_fail_open is False
