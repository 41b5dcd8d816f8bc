"""Module hops of one proxied request: each time control passes from a function of one ModelPort module
into a function of another, from server/app.py's ASGI entry to the response's last byte
(docs/architecture.md, "Module hops of a proxied request").

    python bench/hops.py                      # this checkout
    python bench/hops.py --tree /tmp/main-copy

Drives the app in-process over ASGI, as bench/instructions.py does (logging off, the admin key), with a
Replicate prediction create through the proxy route (``POST /v1/predictions``, ``Prefer: wait``) to
the nginx upstream. The third request is traced with ``sys.setprofile``: a hop is a function entered
for the first time whose caller is in another module of the package (a coroutine or generator resumed
is not a new hop; calls into the standard library, aiohttp or uvicorn are not hops). Prints the count
and the hops in order, ``caller module -> callee module.function``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).parent


def traced_hops(tree: str, origin: str) -> list[str]:
    sys.path.insert(0, str(Path(tree) / "src"))
    from instructions import ADMIN_KEY, _call
    from modelport.server.app import ModelPortApp
    from modelport.server.bootstrap import bootstrap
    from modelport.settings import Settings
    from workload import REPLICATE_KEY, SCENARIOS

    package = str(Path(tree).resolve() / "src" / "modelport") + os.sep
    home = tempfile.mkdtemp(prefix="modelport-hops-")
    config = Path(home) / "modelport.toml"
    config.write_text(f'[[providers]]\nslug = "bench-replicate"\nprovider = "replicate"\nsecret_env = "BENCH_REPLICATE_KEY"\n'
                      f'custom_host = "{origin}/v1"\n')  # fmt: skip
    os.environ.update({"BENCH_REPLICATE_KEY": REPLICATE_KEY, "MODELPORT_LOGGING": "false"})
    settings = Settings.load({"config": config, "data_dir": home, "admin_key": ADMIN_KEY, "trusted_hosts": "127.0.0.1"})
    bootstrap(settings)
    scenario = SCENARIOS["replicate-0ms"]
    headers = {"x-portkey-api-key": ADMIN_KEY, "x-portkey-provider": "@bench-replicate",
               "content-type": "application/json", **scenario.extra_headers}
    hops: list[str] = []
    entered: list[object] = []  # every frame seen, held so that no id is reused while tracing
    seen: set[int] = set()

    def module_of(frame) -> str | None:
        name = frame.f_code.co_filename
        return name[len(package):] if name.startswith(package) else None

    def profile(frame, event, arg) -> None:
        if event != "call" or id(frame) in seen:
            return
        seen.add(id(frame))
        entered.append(frame)
        callee = module_of(frame)
        caller = module_of(frame.f_back) if frame.f_back is not None else None
        if callee is not None and caller is not None and caller != callee:
            hops.append(f"{caller} -> {callee}.{frame.f_code.co_name}")

    async def run() -> None:
        app = ModelPortApp(settings)
        await app.start()
        for traced in (False, False, True):  # two to warm up (caches filled, connections pooled), one traced
            sys.setprofile(profile if traced else None)
            try:
                status, _ = await _call(app, "POST", "/v1" + scenario.path, headers, scenario.body)
            finally:
                sys.setprofile(None)
            assert status == 201, status
        await app.stop()

    asyncio.run(run())  # the driver's frames are outside the package: the first hop is into server/app.py
    return hops


def main() -> None:
    sys.path.insert(0, str(BENCH_DIR))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tree", default=str(BENCH_DIR.parent), help="the checkout to measure (its src/)")
    args = parser.parse_args()
    from upstreams import start_upstreams

    workdir = Path(tempfile.mkdtemp(prefix="modelport-hops-"))
    upstreams = start_upstreams(workdir, Path(sys.executable))  # only nginx answers here; this python has aiohttp
    try:
        hops = traced_hops(args.tree, upstreams.fixed_origin)
    finally:
        upstreams.stop()
    print(f"{len(hops)} module hops")
    for hop in hops:
        print("  " + hop)


if __name__ == "__main__":
    main()
