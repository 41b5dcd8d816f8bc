"""The fake providers on loopback: nginx for the 0 ms regime, aiohttp for 60 ms and SSE."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from service import Service, free_port
from workload import (
    FIXED,
    OPENAI_KEY,
    REPLICATE_KEY,
    UPSTREAM_DIR,
    Scenario,
    fixed_response,
)


def _nginx_literal(body: bytes) -> str:
    text = body.decode()
    # Inside nginx's single-quoted string a '$' would start a variable; the canned JSON has none.
    if "$" in text or "'" in text or "\\" in text:
        raise ValueError("canned response must not contain $, ' or \\ for nginx's return")
    return text


def render_nginx_conf(prefix: Path, port: int) -> Path:
    conf = (UPSTREAM_DIR / "nginx.conf.template").read_text()
    values = {
        "prefix": str(prefix),
        "port": str(port),
        "openai_key": OPENAI_KEY,
        "replicate_key": REPLICATE_KEY,
        "openai_chat": _nginx_literal(fixed_response("openai")),
        "replicate_prediction": _nginx_literal(fixed_response("replicate")),
    }
    for name, value in values.items():
        conf = conf.replace("{{" + name + "}}", value)
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


@dataclass
class Upstreams:
    fixed: Service
    slow: Service
    fixed_origin: str
    slow_origin: str

    def origin(self, scenario: Scenario) -> str:
        return self.fixed_origin if scenario.upstream == FIXED else self.slow_origin

    def stop(self) -> None:
        self.fixed.stop()
        self.slow.stop()


def start_upstreams(workdir: Path, python: Path) -> Upstreams:
    """Start both upstreams; `python` must have aiohttp (the bare pass-through's environment)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx not found: apt-get install -y nginx-light")
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    fixed_port, slow_port = free_port(), free_port()
    conf = render_nginx_conf(prefix, fixed_port)
    fixed = Service("upstream-fixed", [nginx, "-p", str(prefix), "-c", str(conf)],
                    workdir / "logs" / "upstream-fixed.log")
    slow = Service("upstream-slow", [str(python), str(UPSTREAM_DIR / "slow.py"), "--port",
                                     str(slow_port), "--responses", str(UPSTREAM_DIR)],
                   workdir / "logs" / "upstream-slow.log")
    upstreams = Upstreams(fixed, slow, f"http://127.0.0.1:{fixed_port}",
                          f"http://127.0.0.1:{slow_port}")
    try:
        fixed.start()
        slow.start()
        fixed.wait_ready(upstreams.fixed_origin + "/health", timeout=15)
        slow.wait_ready(upstreams.slow_origin + "/health", timeout=30)
    except BaseException:
        upstreams.stop()
        raise
    return upstreams
