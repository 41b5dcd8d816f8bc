"""The log service's work per record with OpenTelemetry traces off and on, in instructions (callgrind).

    python bench/otel_records.py                       # this checkout, Replicate and chat records
    python bench/otel_records.py --tree /tmp/main-copy --shapes replicate --small 200 --large 1000

Records are captured first (no valgrind): the app of ``--tree`` is driven in-process over ASGI, as
bench/instructions.py drives it, with one ``replicate-0ms`` or ``openai-0ms`` request of bench/workload.py
to the nginx upstream, and the record its pipeline hands to the log service is kept. Then, under
``valgrind --tool=callgrind``, a ``LogWriter`` of that tree takes copies of it (fresh log ids, as the
benchmark's requests get) in batches of 100, as the log service's lanes do: enrich (``_prepare_batch``,
which feeds the exporter) and write (``_write``, SQLite). Modes:

- ``off``: no exporter, what ``modelport`` does;
- ``spans``: the exporter fed, spans built and encoded, then discarded: the writer's lane's share;
- ``otel``: as ``spans``, and exported 512 a POST to nginx's ``/v1/traces``: what ``modelport-otel`` does.

Each mode runs twice (``--small`` and ``--large`` records); the difference divided by the difference in
records cancels start-up. Instruction counts do not depend on what else the machine runs.
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
MODES = ("off", "spans", "otel")
SLUGS = {"replicate": "bench-replicate", "openai": "bench-openai"}
SCENARIO_OF = {"replicate": "replicate-0ms", "openai": "openai-0ms"}
BATCH = 100  # the writer's BATCH_SIZE


def _settings(tree: str, home: str, origin: str, traced: bool):
    sys.path.insert(0, str(Path(tree) / "src"))
    from modelport.settings import Settings
    from workload import OPENAI_KEY, REPLICATE_KEY

    config = Path(home) / "modelport.toml"
    config.write_text("".join(f'[[providers]]\nslug = "{slug}"\nprovider = "{shape}"\nsecret_env = "BENCH_{shape.upper()}_KEY"\n'
                              f'custom_host = "{origin}/v1"\n' for shape, slug in SLUGS.items()))  # fmt: skip
    os.environ.update({"BENCH_OPENAI_KEY": OPENAI_KEY, "BENCH_REPLICATE_KEY": REPLICATE_KEY})
    otel = {"otel_endpoint": origin} if traced else {}
    return Settings.load({"config": config, "data_dir": home, "admin_key": ADMIN_KEY, "trusted_hosts": "127.0.0.1",
                          **otel})  # fmt: skip


def capture(tree: str, shape: str, origin: str, out: str) -> None:
    """In a plain process: one request of ``shape`` through the app; its log record, in the wire form, to ``out``."""
    settings = _settings(tree, tempfile.mkdtemp(prefix="modelport-otel-capture-"), origin, traced=False)
    from instructions import _call
    from modelport.logs.record import records_to_wire
    from modelport.server.app import ModelPortApp
    from modelport.server.bootstrap import bootstrap
    from workload import SCENARIOS

    bootstrap(settings)
    scenario = SCENARIOS[SCENARIO_OF[shape]]

    class Kept(list):
        submit = list.append

    async def run() -> None:
        app = ModelPortApp(settings)
        await app.start()
        kept = Kept()
        app.gateway.recorder = kept  # the record as the pipeline hands it over, before any log service sees it
        headers = {"x-portkey-api-key": ADMIN_KEY, "x-portkey-provider": f"@{SLUGS[shape]}",
                   "content-type": "application/json", **scenario.extra_headers}
        status, body = await _call(app, "POST", "/v1" + scenario.path, headers, scenario.body)
        assert status < 300 and scenario.expect in body, (status, body[:300])
        await app.stop()
        Path(out).write_bytes(records_to_wire(kept))

    asyncio.run(run())


def drive(tree: str, wire: str, records: int, mode: str, origin: str) -> None:
    """In the measured process: ``records`` copies of the captured record through a writer in ``mode``."""
    settings = _settings(tree, tempfile.mkdtemp(prefix="modelport-otel-records-"), origin, traced=mode != "off")
    from modelport.logs.otel import SpanExporter
    from modelport.logs.record import new_time_ordered_id, records_from_wire
    from modelport.logs.spill import SpillFile
    from modelport.logs.writer import LogWriter
    from modelport.server.bootstrap import bootstrap
    from modelport.store import open_store

    bootstrap(settings)
    store = open_store(settings)
    loop = asyncio.new_event_loop()
    session = loop.run_until_complete(_session())
    writer = LogWriter(settings, store, lambda: session)
    exporter = SpanExporter.feeding_on(writer, lambda: session) if mode != "off" else None
    writer._spill = SpillFile(settings.data_dir / "spill")  # what start() sets up, without its tasks
    writer._open()
    for start in range(0, records, BATCH):
        batch = records_from_wire(_copies(wire, min(BATCH, records - start)))
        for record in batch:
            record.id = new_time_ordered_id("log_")
        writer._write(writer._prepare_batch(batch))
        if exporter is not None:
            _ship(loop, exporter, mode, everything=start + BATCH >= records)
    writer._close()
    loop.run_until_complete(session.close())


_WIRE: dict[tuple[str, int], bytes] = {}


def _copies(wire: str, count: int) -> bytes:
    """The captured record ``count`` times in one wire blob (decoded per batch, as the log service does)."""
    key = (wire, count)
    if key not in _WIRE:
        import marshal

        (values,) = marshal.loads(Path(wire).read_bytes())
        _WIRE[key] = marshal.dumps([values] * count)
    return _WIRE[key]


async def _session():
    import aiohttp

    return aiohttp.ClientSession()


def _ship(loop, exporter, mode: str, everything: bool) -> None:
    from modelport.logs.otel import BATCH_SPANS

    while len(exporter._queue) >= BATCH_SPANS or (everything and exporter._queue):
        batch = exporter._take()
        if mode == "otel":
            assert loop.run_until_complete(exporter._export(batch, 10.0)), "nginx did not take the spans"


def count(tree: str, wire: Path, records: int, mode: str, origin: str, workdir: Path) -> int:
    out = workdir / f"callgrind.{wire.stem}.{mode}.{records}"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                    "--drive", tree, str(wire), str(records), mode, origin], check=True, capture_output=True)  # fmt: skip
    return int(re.search(r"^summary: (\d+)", out.read_text(errors="replace"), re.M).group(1))


def main() -> None:
    sys.path.insert(0, str(BENCH_DIR))
    if len(sys.argv) > 1 and sys.argv[1] == "--capture":
        capture(*sys.argv[2:6])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tree", default=str(BENCH_DIR.parent), help="the checkout to measure (its src/)")
    parser.add_argument("--shapes", default="replicate,openai")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=1000)
    args = parser.parse_args()
    import peers
    from upstreams import start_upstreams

    workdir = Path(tempfile.mkdtemp(prefix="modelport-otel-callgrind-"))
    upstreams = start_upstreams(workdir, peers.bare_python())
    origin = upstreams.fixed_origin
    try:
        for shape in args.shapes.split(","):
            wire = workdir / f"{shape}.wire"
            subprocess.run([sys.executable, __file__, "--capture", args.tree, shape, origin, str(wire)], check=True)
            figures = {}
            for mode in args.modes.split(","):
                small = count(args.tree, wire, args.small, mode, origin, workdir)
                large = count(args.tree, wire, args.large, mode, origin, workdir)
                figures[mode] = (large - small) / (args.large - args.small) / 1000
                print(f"{shape:9} {mode:5} {figures[mode]:8.1f}k instructions/record", flush=True)
            if "off" in figures:
                for mode in set(figures) - {"off"}:
                    print(f"{shape:9} {mode:5} -off {figures[mode] - figures['off']:+8.1f}k", flush=True)
            print(json.dumps({"shape": shape, **figures}), flush=True)
    finally:
        upstreams.stop()


if __name__ == "__main__":
    main()
