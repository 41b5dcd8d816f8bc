"""Instructions per request, counted by callgrind: repeatable on a shared machine where timings are not.

    python bench/instructions.py                          # this checkout: plain and limits
    python bench/instructions.py --tree /tmp/main-copy --modes plain,limits,limits-redis

Drives the app in-process over ASGI (no uvicorn; logging off unless ``--logging``) with chat completions
to the nginx upstream, under ``valgrind --tool=callgrind``, twice (``--small`` and ``--large`` requests); the
difference divided by the difference in requests cancels start-up. Modes: ``plain`` (admin key, no
limits), ``tenant`` (a non-admin key, no limits: what ``limits`` is measured against), ``limits`` (a request rate limit and a cost budget on the key, a rate limit on the provider,
as the ``modelport-limits`` contender), ``limits-redis`` (the same with the counters on the Redis at
127.0.0.1:6379, under a key prefix of its own, deleted after), ``responses`` (``POST /v1/responses`` with
``"store": false`` to an OpenAI-compatible provider, translated to chat: no stored state) and
``responses-stored`` (the same without ``store``, so the gateway keeps each answer,
gateway/stored_responses.py). With ``--logging`` the log writer runs in the measured process (as it does
without a log service), so the count adds what the log service does a request under ``modelport serve``:
enrichment, the insert and the budgets' settlement. Each count is split into the event loop's thread
(the request path) and the others (the log writer's lanes, which settle budgets even with logging off).
Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).parent
ADMIN_KEY = "mp-bench-admin-key-for-loopback-only-0001"
REDIS_URL = "redis://127.0.0.1:6379/0"
NEVER = [{"type": "requests", "unit": "rpm", "value": 10**9}]


async def _call(app, method: str, path: str, headers: dict[str, str], payload: bytes) -> tuple[int, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    pairs = [(k.encode(), v.encode()) for k, v in headers.items()] + [(b"content-length", str(len(payload)).encode())]
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": pairs, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "scheme": "http",
             "http_version": "1.1"}  # fmt: skip
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def drive(tree: str, requests: int, mode: str, origin: str, logging: bool) -> None:
    """In the measured process: start the app from ``tree``, send ``requests`` chat completions."""
    sys.path.insert(0, str(Path(tree) / "src"))
    from modelport.server.app import ModelPortApp
    from modelport.server.bootstrap import bootstrap
    from modelport.settings import Settings
    from workload import OPENAI_KEY, REPLICATE_KEY, SCENARIOS

    home = tempfile.mkdtemp(prefix="modelport-instructions-")
    config = Path(home) / "modelport.toml"
    config.write_text(f'[[providers]]\nslug = "bench-openai"\nprovider = "openai"\nsecret_env = "BENCH_UPSTREAM_KEY"\n'
                      f'custom_host = "{origin}/v1"\n'
                      f'[[providers]]\nslug = "bench-replicate"\nprovider = "replicate"\nsecret_env = "BENCH_REPLICATE_KEY"\n'
                      f'custom_host = "{origin}/v1"\n')  # fmt: skip
    if mode.startswith("responses"):  # Responses over chat: the nginx upstream answers the chat completion
        config.write_text(config.read_text() + f'[[providers]]\nslug = "bench-groq"\nprovider = "groq"\n'
                          f'secret_env = "BENCH_UPSTREAM_KEY"\ncustom_host = "{origin}/v1"\n')  # fmt: skip
    os.environ.update({"BENCH_UPSTREAM_KEY": OPENAI_KEY, "BENCH_REPLICATE_KEY": REPLICATE_KEY,
                       "MODELPORT_LOGGING": "true" if logging else "false"})
    prefix = f"bench-{Path(home).name}:"
    redis = {"redis_url": REDIS_URL, "redis_key_prefix": prefix, "redis_timeout": 10} if mode == "limits-redis" else {}
    settings = Settings.load({"config": config, "data_dir": home, "admin_key": ADMIN_KEY,
                              "trusted_hosts": "127.0.0.1", **redis})  # fmt: skip
    bootstrap(settings)
    scenario = SCENARIOS["replicate-0ms" if mode == "replicate" else "openai-0ms"]

    async def run() -> None:
        app = ModelPortApp(settings)
        await app.start()
        key = ADMIN_KEY
        admin = {"x-portkey-api-key": ADMIN_KEY, "content-type": "application/json"}
        if mode not in ("plain", "replicate", "responses", "responses-stored"):
            created = {"name": "bench", "scopes": ["inference"]}
            if mode != "tenant":
                created.update(rate_limits=NEVER, usage_limits={"credit_limit": 10**6})
            _, answer = await _call(app, "POST", "/v1/api-keys", admin, json.dumps(created).encode())
            key = json.loads(answer)["key"]
            if mode != "tenant":
                await _call(app, "PUT", "/v1/providers/bench-openai", admin, json.dumps({"rate_limits": NEVER}).encode())
        provider = "@bench-replicate" if mode == "replicate" else "@bench-openai"
        headers = {"x-portkey-api-key": key, "x-portkey-provider": provider, "content-type": "application/json",
                   **scenario.extra_headers}
        path, payload = "/v1" + scenario.path, scenario.body
        if mode.startswith("responses"):
            headers["x-portkey-provider"], path = "@bench-groq", "/v1/responses"
            asked = {"model": "gpt-4o-mini", "input": "Say hello in one short sentence."}
            payload = json.dumps(asked if mode == "responses-stored" else {**asked, "store": False}).encode()
        for _ in range(requests):
            status, _ = await _call(app, "POST", path, headers, payload)
            assert status == (201 if mode == "replicate" else 200), status
        await app.stop()

    try:
        asyncio.run(run())
    finally:
        if redis:
            import redis as client

            connection = client.Redis.from_url(REDIS_URL)
            keys = list(connection.scan_iter(match=prefix + "*"))
            if keys:
                connection.delete(*keys)


def count(tree: str, requests: int, mode: str, origin: str, workdir: Path, logging: bool) -> tuple[int, int]:
    """Instructions of the whole process and of its main thread (the event loop: the request path)."""
    out = workdir / f"callgrind.{mode}{'.logged' if logging else ''}.{requests}"
    # A fixed hash seed: with a random one, start-up's dict probes differ from run to run by millions of
    # instructions (callgrind: _Py_dict_lookup), which the two runs' difference divides into ±25k a request.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(["valgrind", "--tool=callgrind", "--dump-instr=no", "--separate-threads=yes",
                    f"--callgrind-out-file={out}", sys.executable, __file__,
                    "--drive", tree, str(requests), mode, origin, str(int(logging))], check=True, capture_output=True,
                   env=env)  # fmt: skip
    threads = sorted(workdir.glob(out.name + "-*"))  # one file a thread, -01 the main one
    counts = [int(re.search(r"^summary: (\d+)", path.read_text(errors="replace"), re.M).group(1)) for path in threads]
    return sum(counts), counts[0]


def main() -> None:
    sys.path.insert(0, str(BENCH_DIR))
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tree", default=str(BENCH_DIR.parent), help="the checkout to measure (its src/)")
    parser.add_argument("--modes", default="plain,limits")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=400)
    parser.add_argument("--logging", action="store_true", help="log every request, the writer in the measured process")
    args = parser.parse_args()
    from upstreams import start_upstreams

    workdir = Path(tempfile.mkdtemp(prefix="modelport-callgrind-"))
    # The measured process runs on this interpreter, so it has aiohttp for the slow upstream too: no venv to build.
    upstreams = start_upstreams(workdir, Path(sys.executable))
    print(f"callgrind files in {workdir} (callgrind_annotate --inclusive=yes FILE)", file=sys.stderr)
    try:
        for mode in args.modes.split(","):
            small = count(args.tree, args.small, mode, upstreams.fixed_origin, workdir, args.logging)
            large = count(args.tree, args.large, mode, upstreams.fixed_origin, workdir, args.logging)
            total, loop = ((b - a) / (args.large - args.small) / 1000 for a, b in zip(small, large))
            print(f"{mode:13} {total:8.1f}k instructions/request ({loop:.1f}k on the event loop's thread, "
                  f"{total - loop:.1f}k on the others)", flush=True)
    finally:
        upstreams.stop()


if __name__ == "__main__":
    main()
