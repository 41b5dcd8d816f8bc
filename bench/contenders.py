"""The contenders: how each is installed, started, and addressed for every scenario.

All of them reach the same two loopback upstreams; what differs is only the route a request takes
(and the headers that pick it), never the body.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import peers
from load import Target
from service import Service, free_port
from upstreams import Upstreams
from workload import FIXED, MODEL_FIXED, MODEL_SLOW, OPENAI_KEY, REPLICATE_KEY, Scenario

BENCH_DIR = Path(__file__).parent
ADMIN_KEY = "mp-bench-admin-key-for-loopback-only-0001"  # fake keys, loopback only
LITELLM_MASTER_KEY = "sk-bench-litellm-master"
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


@dataclass
class Contender:
    """Base: subclasses say how to start (if at all) and where each scenario goes."""

    name: str
    summary: str
    service: Service | None = field(default=None, init=False)
    origin: str = field(default="", init=False)

    def start(self, workdir: Path, upstreams: Upstreams) -> None:
        """Install if needed, start, and wait until ready. Raises InstallError or ServiceError."""

    def target(self, scenario: Scenario, upstreams: Upstreams) -> Target:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.service.pid if self.service else None

    @property
    def port(self) -> int:
        return int(self.origin.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.service:
            self.service.stop()

    def _serve(self, command: list[str], workdir: Path, port: int, ready_path: str | None,
               env: dict[str, str] | None = None, timeout: float = 90.0) -> None:
        """Start `command` listening on `port`; ready when `ready_path` answers 2xx (None: when
        the port accepts connections)."""
        self.origin = f"http://127.0.0.1:{port}"
        self.service = Service(self.name, command, workdir / "logs" / f"{self.name}.log", env=env,
                               cwd=workdir)
        self.service.start()
        if ready_path is None:
            self.service.wait_listening(port, timeout=timeout)
        else:
            self.service.wait_ready(self.origin + ready_path, timeout=timeout)


def _provider_headers(scenario: Scenario) -> dict[str, str]:
    return {"Authorization": f"Bearer {scenario.provider_key}", **scenario.extra_headers}


class Direct(Contender):
    def target(self, scenario: Scenario, upstreams: Upstreams) -> Target:
        return Target(upstreams.origin(scenario) + "/v1" + scenario.path, _provider_headers(scenario))


class BarePassthrough(Contender):
    def start(self, workdir: Path, upstreams: Upstreams) -> None:
        port = free_port()
        # It forwards every path, so it has no health route: ready when it listens.
        self._serve([str(peers.bare_python()), str(BENCH_DIR / "bare_passthrough.py"), "--port",
                     str(port)], workdir, port, None, env={"PYTHONPATH": str(BENCH_DIR)})

    def target(self, scenario: Scenario, upstreams: Upstreams) -> Target:
        headers = {**_provider_headers(scenario), "x-bench-upstream": upstreams.origin(scenario)}
        return Target(self.origin + "/v1" + scenario.path, headers)


def _slug(scenario: Scenario) -> str:
    regime = "" if scenario.upstream == FIXED else "-slow"
    return f"bench-{scenario.shape}{regime}"


@dataclass
class ModelPort(Contender):
    workers: int = 1
    logging: bool = True
    limits: bool = False  # a request rate limit and a budget on the caller's key, a rate limit on every provider
    tenant: bool = False  # the caller's key is a non-admin key of its own (as with limits), with no limits on it
    otel: bool = False  # OpenTelemetry traces exported to a sink that answers 200 (the nginx upstream's /v1/traces)
    redis: bool = False  # counters (and cache) on the local Redis, under a prefix of the run's own
    postgres: bool = False  # keys, providers, configs and logs in a database of the run's own on 127.0.0.1:5432

    home: Path | None = field(default=None, init=False)
    key: str = field(default=ADMIN_KEY, init=False)

    def recorded(self) -> dict[str, int]:
        """Rows in ModelPort's log tables after the run (read once it stopped and flushed): proof
        that the full pipeline really logged, or that logging off really was off."""
        if self.postgres:
            return self._recorded_in_postgres()
        database = self.home / "data" / "modelport.db" if self.home else None
        if not database or not database.exists():
            return {}
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                      if "log" in r[0]]
            return {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}

    def start(self, workdir: Path, upstreams: Upstreams) -> None:
        home = self.home = workdir / self.name
        home.mkdir(parents=True, exist_ok=True)
        config = home / "modelport.toml"
        config.write_text(self._config(upstreams))
        env = {
            "MODELPORT_ADMIN_KEY": ADMIN_KEY,
            "MODELPORT_CONFIG": str(config),
            "BENCH_UPSTREAM_KEY": OPENAI_KEY,
            "BENCH_REPLICATE_KEY": REPLICATE_KEY,
        }
        if not self.logging:
            env["MODELPORT_LOGGING"] = "false"
        if self.otel:
            env["MODELPORT_OTEL_ENDPOINT"] = upstreams.fixed_origin
        if self.postgres:
            env.update(self._create_database())
        if self.redis:
            env["MODELPORT_REDIS_URL"] = REDIS_URL
            env["MODELPORT_REDIS_KEY_PREFIX"] = self._redis_prefix = f"bench-{uuid.uuid4().hex[:12]}:"
        port = free_port()
        self._serve([str(peers.modelport_bin()), "serve", "--host", "127.0.0.1", "--port", str(port),
                     "--data-dir", str(home / "data"), "--workers", str(self.workers)],
                    workdir, port, "/health", env=env)
        if self.limits:
            self._limit_everything()
        elif self.tenant:
            self.key = self._admin("POST", "/v1/api-keys", {"name": "bench", "scopes": ["inference"]})["key"]

    def stop(self) -> None:
        super().stop()
        if self.postgres:
            self._count_and_drop_database()
        if self.redis:  # a budget with no reset lives a century: leave nothing behind in a shared Redis
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=self._redis_prefix + "*", count=1000))
            if keys:
                client.delete(*keys)

    def _create_database(self) -> dict[str, str]:
        import base64
        import secrets

        import psycopg

        self._database = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {self._database}")
        return {"MODELPORT_DATABASE_URL": f"{POSTGRES_SERVER}/{self._database}",
                "MODELPORT_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "MODELPORT_SIGNING_SECRET": secrets.token_urlsafe(32)}

    def _recorded_in_postgres(self) -> dict[str, int]:
        return getattr(self, "_final_counts", {})

    def _count_and_drop_database(self) -> None:
        """Once stopped (every record flushed): count what was logged, then leave nothing behind."""
        import psycopg

        with psycopg.connect(f"{POSTGRES_SERVER}/{self._database}", autocommit=True) as db:
            self._final_counts = {table: db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                                  for table in ("logs", "predictions")}
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self._database} WITH (FORCE)")

    def _limit_everything(self) -> None:
        """Limits high enough never to refuse, so the run measures what checking them costs."""
        never_reached = [{"type": "requests", "unit": "rpm", "value": 10**9}]
        created = self._admin("POST", "/v1/api-keys", {"name": "bench", "scopes": ["inference"],
                                                        "rate_limits": never_reached,
                                                        "usage_limits": {"credit_limit": 10**6}})
        self.key = created["key"]
        for shape in ("openai", "replicate"):
            for regime in ("", "-slow"):
                self._admin("PUT", f"/v1/providers/bench-{shape}{regime}", {"rate_limits": never_reached})

    def _admin(self, method: str, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.origin + path, json.dumps(body).encode(), method=method,
                                         headers={"x-portkey-api-key": ADMIN_KEY, "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    @staticmethod
    def _config(upstreams: Upstreams) -> str:
        # Operator-configured stored providers, one per shape and regime, so requests use @slug
        # and ModelPort injects the stored credential (the full pipeline, not a bring-your-own key).
        blocks = []
        for shape, secret in (("openai", "BENCH_UPSTREAM_KEY"), ("replicate", "BENCH_REPLICATE_KEY")):
            for regime, origin in (("", upstreams.fixed_origin), ("-slow", upstreams.slow_origin)):
                blocks.append(f'[[providers]]\nslug = "bench-{shape}{regime}"\nprovider = "{shape}"\n'
                              f'secret_env = "{secret}"\ncustom_host = "{origin}/v1"\n')
        return "\n".join(blocks)

    def target(self, scenario: Scenario, upstreams: Upstreams) -> Target:
        headers = {"x-portkey-api-key": self.key, "x-portkey-provider": f"@{_slug(scenario)}",
                   **scenario.extra_headers}
        return Target(self.origin + "/v1" + scenario.path, headers)


@dataclass
class Portkey(Contender):
    version: str | None = None

    def start(self, workdir: Path, upstreams: Upstreams) -> None:
        entry = peers.portkey_entry(self.version)
        port = free_port()
        # Loopback custom hosts pass Portkey's SSRF check only because they are trusted hosts; its
        # default list (localhost, 127.0.0.1, ::1, host.docker.internal) already has them, set
        # here explicitly (@portkey-ai/gateway 1.15.2, TRUSTED_CUSTOM_HOSTS).
        env = {"TRUSTED_CUSTOM_HOSTS": "127.0.0.1,localhost", "NODE_ENV": "production"}
        self._serve(["node", str(entry), f"--port={port}", "--headless"], workdir, port, "/",
                    env=env)

    def target(self, scenario: Scenario, upstreams: Upstreams) -> Target:
        headers = {**_provider_headers(scenario), "x-portkey-provider": scenario.shape,
                   "x-portkey-custom-host": upstreams.origin(scenario) + "/v1"}
        return Target(self.origin + "/v1" + scenario.path, headers)


@dataclass
class LiteLLM(Contender):
    version: str | None = None

    def start(self, workdir: Path, upstreams: Upstreams) -> None:
        command = peers.litellm_bin(self.version)
        home = workdir / self.name
        home.mkdir(parents=True, exist_ok=True)
        config = home / "litellm.yaml"
        config.write_text(json.dumps(self._config(upstreams), indent=2))  # JSON is valid YAML
        port = free_port()
        # No database: LiteLLM's lightest proxy setup. A master key is its key check (and since
        # 1.108 it refuses to start without one). The cost map ships inside the package; without
        # LITELLM_LOCAL_MODEL_COST_MAP it tries the internet at start-up first.
        env = {"LITELLM_MASTER_KEY": LITELLM_MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "LITELLM_LOG": "ERROR"}
        self._serve([str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                     "--num_workers", "1"], workdir, port, "/health/liveliness", env=env, timeout=180)

    @staticmethod
    def _config(upstreams: Upstreams) -> dict:
        models = [{"model_name": name,
                   "litellm_params": {"model": f"openai/{name}", "api_base": origin + "/v1",
                                      "api_key": OPENAI_KEY}}
                  for name, origin in ((MODEL_FIXED, upstreams.fixed_origin),
                                       (MODEL_SLOW, upstreams.slow_origin))]
        # Replicate has no unified route in LiteLLM; its configured pass-through endpoints are the
        # equivalent of a proxied call with a stored credential.
        passthrough = [{"path": f"/bench-{regime}/v1/predictions",
                        "target": origin + "/v1/predictions",
                        "headers": {"Authorization": f"Bearer {REPLICATE_KEY}"}}
                       for regime, origin in (("fixed", upstreams.fixed_origin),
                                              ("slow", upstreams.slow_origin))]
        return {"model_list": models, "general_settings": {"pass_through_endpoints": passthrough}}

    def target(self, scenario: Scenario, upstreams: Upstreams) -> Target:
        headers = {"Authorization": f"Bearer {LITELLM_MASTER_KEY}", **scenario.extra_headers}
        if scenario.shape == "replicate":
            return Target(self.origin + f"/bench-{scenario.upstream}/v1/predictions", headers)
        return Target(self.origin + "/v1" + scenario.path, headers)


def rotated(contenders: list[Contender], round_no: int) -> list[Contender]:
    """The order for one round: rotated by one each round, so each contender takes every slot in turn
    and machine drift shows as a spread rather than as a bias against whoever runs last."""
    shift = round_no % len(contenders)
    return contenders[shift:] + contenders[:shift]


def all_contenders(portkey_version: str | None = None,
                   litellm_version: str | None = None) -> list[Contender]:
    return [
        Direct("direct", "straight to the upstream: the limit"),
        BarePassthrough("bare", "plain ASGI on uvicorn + aiohttp, ~50 lines: the Python limit"),
        ModelPort("modelport", "full pipeline: key check, @slug credential, logs with bodies, cost"),
        ModelPort("modelport-nolog", "as above with MODELPORT_LOGGING=false", logging=False),
        ModelPort("modelport-2w", "full pipeline, 2 worker processes", workers=2),
        ModelPort("modelport-otel", "full pipeline with OpenTelemetry traces to a collector that answers 200", otel=True),
        ModelPort("modelport-tenant", "full pipeline through a non-admin key with no limits: what modelport-limits "
                  "is measured against (tenant isolation applies to it as to modelport-limits)", tenant=True),
        ModelPort("modelport-limits", "full pipeline with a request rate limit and a cost budget on the key and a "
                  "request rate limit on the provider", limits=True),
        ModelPort("modelport-limits-redis", "as modelport-limits, with the counters on Redis (127.0.0.1:6379)",
                  limits=True, redis=True),
        ModelPort("modelport-pg", "full pipeline on PostgreSQL (127.0.0.1:5432) and Redis: keys, providers and logs "
                  "shared as by several nodes", postgres=True, redis=True),
        ModelPort("modelport-limits-pg", "as modelport-limits, on PostgreSQL and Redis", limits=True, postgres=True,
                  redis=True),
        Portkey("portkey", "Portkey's open-source gateway (Node), x-portkey-custom-host",
                version=portkey_version),
        LiteLLM("litellm", "LiteLLM proxy, no database, model_list at the upstream",
                version=litellm_version),
    ]
