"""Installs each contender into its own environment under bench/.peers/ (git-ignored).

    bare/       venv: uvicorn[standard], aiohttp, orjson (also runs the slow upstream)
    modelport/  venv: this checkout, editable, so the benchmark always measures the working tree
    portkey/    npm:  @portkey-ai/gateway
    litellm/    venv: litellm[proxy]

Each install is skipped when its stamp file matches what would be installed. Run alone to install
everything ahead of time: python bench/peers.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

BENCH_DIR = Path(__file__).parent
REPO = BENCH_DIR.parent
PEERS = BENCH_DIR / ".peers"


class InstallError(RuntimeError):
    """A contender's environment could not be built."""


def _run(command: list[str], log: Path, cwd: Path | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise InstallError(f"{' '.join(command)} failed ({done.returncode}); see {log}:\n{tail}")


def _stamped(home: Path, spec: str) -> bool:
    stamp = home / ".bench-stamp"
    return stamp.exists() and stamp.read_text() == spec


def _stamp(home: Path, spec: str) -> None:
    (home / ".bench-stamp").write_text(spec)


def _venv(name: str, packages: list[str], spec: str) -> Path:
    """A venv under .peers/<name> holding `packages`; returns its python."""
    home = PEERS / name
    python = home / "bin" / "python"
    if _stamped(home, spec) and python.exists():
        return python
    print(f"[peers] installing {name}: {' '.join(packages)}", file=sys.stderr)
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
    _run([str(python), "-m", "pip", "install", "--quiet", *packages], PEERS / f"{name}.install.log")
    _stamp(home, spec)
    return python


def bare_python() -> Path:
    packages = ["uvicorn[standard]", "aiohttp", "orjson"]
    return _venv("bare", packages, " ".join(packages))


def modelport_bin() -> Path:
    """`modelport` from an editable install of this checkout; reinstalled when pyproject changes."""
    pyproject = (REPO / "pyproject.toml").read_bytes()
    spec = "editable [postgres] " + hashlib.sha256(pyproject).hexdigest()
    python = _venv("modelport", ["-e", f"{REPO}[postgres]"], spec)  # the drivers: contenders on PostgreSQL and Redis
    return python.parent / "modelport"


def litellm_bin(version: str | None = None) -> Path:
    package = f"litellm[proxy]=={version}" if version else "litellm[proxy]"
    python = _venv("litellm", [package], package)
    return python.parent / "litellm"


# The npm package lets @hono/node-server float (^1.3.3), and from 1.14 on every proxied or streamed
# call fails with "TypeError: immutable" (Portkey-AI/gateway#1389, #1550; measured here: 1.14.2 and
# 1.19.19 fail, 1.13.8 works). Portkey's own repository pins 1.13.5 (patches/@hono+node-server+1.13.5
# .patch), so the benchmark installs that, as their Docker image would.
PORTKEY_PACKAGE_JSON = {"name": "bench-portkey", "private": True,
                        "overrides": {"@hono/node-server": "1.13.5"}}


def portkey_entry(version: str | None = None) -> Path:
    """The Node entry point of Portkey's open-source gateway, installed from npm."""
    home = PEERS / "portkey"
    package = f"@portkey-ai/gateway@{version}" if version else "@portkey-ai/gateway"
    spec = package + " " + json.dumps(PORTKEY_PACKAGE_JSON, sort_keys=True)
    entry = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if _stamped(home, spec) and entry.exists():
        return entry
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise InstallError("node and npm are needed for Portkey's gateway: apt-get install -y nodejs npm")
    print(f"[peers] installing {package} with npm", file=sys.stderr)
    home.mkdir(parents=True, exist_ok=True)
    (home / "package.json").write_text(json.dumps(PORTKEY_PACKAGE_JSON, indent=2) + "\n")
    _run([npm, "install", "--no-audit", "--no-fund", package],
         PEERS / "portkey.install.log", cwd=home)
    _stamp(home, spec)
    return entry


def versions() -> dict[str, str]:
    """Versions of whatever is installed, for the results file."""
    found: dict[str, str] = {}
    for name, dist in (("litellm", "litellm"), ("modelport", "modelport"), ("bare", "uvicorn")):
        python = PEERS / name / "bin" / "python"
        if python.exists():
            script = f"import importlib.metadata as m; print(m.version({dist!r}))"
            done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=False)
            if done.returncode == 0:
                found[dist] = done.stdout.strip()
    package_json = PEERS / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "package.json"
    if package_json.exists():
        found["@portkey-ai/gateway"] = json.loads(package_json.read_text())["version"]
    # First lines: "v20.20.2", "nginx version: nginx/1.22.1", "wrk debian/4.1.0-3+b2 [epoll] ..."
    for tool, flag, pick in (("node", "--version", lambda l: l.lstrip("v")),
                             ("nginx", "-v", lambda l: l.rsplit("/", 1)[-1]),
                             ("wrk", "-v", lambda l: l.split()[1])):
        path = shutil.which(tool)
        if path:
            done = subprocess.run([path, flag], capture_output=True, text=True, check=False)
            found[tool] = pick((done.stdout + done.stderr).strip().splitlines()[0])
    return found


if __name__ == "__main__":
    for install in (bare_python, modelport_bin, litellm_bin, portkey_entry):
        try:
            print(install())
        except InstallError as error:
            print(f"[peers] {error}", file=sys.stderr)
    print(json.dumps(versions(), indent=2))
