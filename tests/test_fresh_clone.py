"""The README's first command, from a clean clone, on Debian's own Python, which refuses `pip install`
outside a virtual environment (PEP 668): it must make and use ./.venv and start the gateway."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.harness import ADMIN_KEY, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def is_externally_managed(python: Path) -> bool:
    probe = ("import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path('stdlib'),"
             " 'EXTERNALLY-MANAGED')) else 1)")
    return python.exists() and subprocess.run([str(python), "-c", probe]).returncode == 0


def readme_serve_command() -> str:
    block = (ROOT / "README.md").read_text().split("```bash\n", 1)[1]
    return block.splitlines()[0].split("#", 1)[0].strip()


@pytest.mark.skipif(not is_externally_managed(SYSTEM_PYTHON), reason="needs a PEP 668 system Python at /usr/bin/python3")
def test_the_readme_serve_command_works_from_a_clean_clone_on_a_pep668_python(tmp_path: Path) -> None:
    command = readme_serve_command()
    assert command == "make serve"  # what this test runs; change both together
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    refused = subprocess.run([str(SYSTEM_PYTHON), "-m", "pip", "install", "--dry-run", "-e", str(clone)],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "externally-managed" in refused.stderr  # the plain pip line would fail here
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(SYSTEM_PYTHON), "MODELPORT_ADMIN_KEY": ADMIN_KEY}
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen([*command.split(), f"ARGS=--port {port} --data-dir {tmp_path / 'data'}"], cwd=clone,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # a new venv installs every dependency from the package index
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        assert (clone / ".venv" / "bin" / "modelport").exists()
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/api-keys", headers={"x-portkey-api-key": ADMIN_KEY})
        assert answer.status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(clone)  # a copy of the sources, test fixtures included: not data the suite left
