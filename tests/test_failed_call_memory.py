"""A request whose upstream call fails is freed when it ends, not at the garbage collector's next full
pass: the connection errors aiohttp and asyncio raise sit in reference cycles with the frames that hold
the request's headers, and a worker runs a full collection rarely (gctune.py)."""

from __future__ import annotations

import httpx
import orjson

from tests.harness import GatewayProcess

MiB = 1024 * 1024
NOTHING_LISTENS = "http://127.0.0.1:9/v1"


def grown_mb(gateway: GatewayProcess, headers_of) -> float:
    with httpx.Client(timeout=30) as client:
        assert client.get(gateway.v1 + "/models", headers=headers_of(-1)).status_code == 502  # warm the path
        before = gateway.worker_memory_kb()
        for i in range(100):
            client.get(gateway.v1 + "/models", headers=headers_of(i))
    return (gateway.worker_memory_kb() - before) / 1024


def test_failed_calls_with_large_headers_do_not_pile_up(tmp_path):
    gateway = GatewayProcess(tmp_path / "data", settings={"max_header_bytes": 2 * MiB, "require_api_key": False,
                                                          "allow_private_hosts": True})
    with gateway:
        forwarded = grown_mb(gateway, lambda i: {"x-portkey-provider": "openai", "x-portkey-custom-host": NOTHING_LISTENS,
                                                 "authorization": "Bearer sk-test", "x-big": f"{i:08d}" + "b" * MiB})
        assert forwarded < 20, f"{forwarded:.0f} MB held by 100 failed calls, each forwarding a 1 MB header"

        def configured(i: int) -> dict[str, str]:
            config = {"provider": "openai", "custom_host": NOTHING_LISTENS, "api_key": "sk-test",
                      "override_params": {"user": f"{i:08d}" + "u" * MiB}}
            return {"x-portkey-config": orjson.dumps(config).decode()}

        planned = grown_mb(gateway, configured)
        assert planned < 20, f"{planned:.0f} MB held by 100 failed calls, each with a 1 MB config"
