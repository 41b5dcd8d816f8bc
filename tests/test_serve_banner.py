"""The first call ``modelport serve`` prints works when pasted into a shell as printed."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import REPLICATE_TOKEN, replicate_provider
from tests.harness import ADMIN_KEY, GatewayProcess


def first_call(gateway: GatewayProcess) -> tuple[str, str]:
    """The banner's description of the first call, and the command under it."""
    lines = gateway.log_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("First call"))
    return lines[index], lines[index + 1].strip()


def test_the_first_call_names_a_stored_provider_and_runs_as_printed(tmp_path, fake_replicate) -> None:
    server, _ = fake_replicate
    provider = replicate_provider(server.url, slug="replicate-prod")
    with GatewayProcess(tmp_path / "data", providers=[provider], env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN}) as gw:
        title, command = first_call(gw)
        assert title == "First call (Replicate through @replicate-prod):"
        assert "<" not in command and "'" not in command  # no placeholder to fill in, nothing left unexpanded
        # The operator's shell holds MODELPORT_ADMIN_KEY, as the gateway's environment does.
        shell = {"PATH": os.environ["PATH"], "MODELPORT_ADMIN_KEY": ADMIN_KEY}
        reply = subprocess.run(["bash", "-c", command + " -s -i"], env=shell, capture_output=True, text=True,
                               timeout=30)  # fmt: skip
    head, _, body = reply.stdout.partition("\n\n")  # text mode has turned CRLF into LF
    # Replicate's own answer (the fake knows no replicate/hello-world), reached with the stored token: a wrong
    # key would be the gateway's 401, a wrong token the fake's 401.
    assert head.startswith("HTTP/1.1 404") and "x-portkey-gateway-exception" not in head.lower(), reply.stdout
    assert "Not found." in body, reply.stdout


def test_without_stored_providers_the_first_call_reads_the_key_file_and_the_callers_token(tmp_path) -> None:
    with GatewayProcess(tmp_path / "data", env={"MODELPORT_ADMIN_KEY": ""}) as gw:  # the key is generated
        title, command = first_call(gw)
        key_file = gw.data_dir / "admin.key"
        assert title == "First call (Replicate, with your own token in REPLICATE_API_TOKEN):"
        assert f'-H "x-portkey-api-key: $(cat {key_file})"' in command
        assert '-H "Authorization: Bearer $REPLICATE_API_TOKEN"' in command
        # As a shell expands it: the generated admin key, which authenticates.
        expanded = subprocess.run(["bash", "-c", f'echo "$(cat {key_file})"'], capture_output=True, text=True)
        assert expanded.stdout.strip() == key_file.read_text().strip()
        assert gw.url in command and "/v1/models/replicate/hello-world" in command
