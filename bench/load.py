"""The load generator: wrk (closed loop, fixed connections, bounded duration) and a single probe."""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_SCRIPT = Path(__file__).parent / "wrk" / "post.lua"


@dataclass(frozen=True)
class Target:
    """Where a contender is reached for one scenario, and the headers it needs."""

    url: str
    headers: dict[str, str]


@dataclass
class LoadResult:
    connections: int
    seconds: float
    requests: int
    errors: int
    error_detail: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    load_cpu_seconds: float = 0.0  # wrk's own CPU: shows whether the load generator was the limit
    sent: int | None = None  # drain mode only: requests handed to the socket (see wrk/post.lua)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rps": self.rps}


def wrk_path() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk not found: apt-get install -y wrk (Debian package 'wrk')")
    return path


def run_wrk(target: Target, body: bytes, connections: int, seconds: float, threads: int = 2,
            timeout: float = 10.0, drain: float = 0.0) -> LoadResult:
    """Hold `connections` keep-alive connections busy for `seconds`; wrk reports the latencies.

    With `drain` > 0 (drain mode, wrk/post.lua), no request is sent in the last `drain` seconds,
    so the ones in flight finish and wrk's count is every request the server answered; `seconds`
    in the result is then the sending window, so `rps` is over the time load was applied."""
    seconds = max(1, math.ceil(seconds))  # wrk takes whole seconds only
    with tempfile.NamedTemporaryFile(prefix="bench-body-", suffix=".json") as body_file:
        body_file.write(body)
        body_file.flush()
        env = {**os.environ, "BENCH_BODY_FILE": body_file.name,
               "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in target.headers.items())}
        command = [wrk_path(), f"-t{max(1, min(threads, connections))}", f"-c{connections}",
                   f"-d{seconds}s", f"--timeout={timeout:g}s", "-s", str(WRK_SCRIPT), target.url]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        if drain > 0:
            env["BENCH_STOP_AT"] = repr(started + seconds - drain)
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=seconds + timeout + 30, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((l for l in done.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    latency = raw["latency_us"]
    return LoadResult(
        connections=connections,
        seconds=seconds - drain if drain > 0 else raw["duration_us"] / 1e6,
        requests=raw["requests"],
        errors=sum(raw["errors"].values()),
        error_detail=raw["errors"],
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        mean_ms=latency["mean"] / 1000,
        max_ms=latency["max"] / 1000,
        load_cpu_seconds=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        sent=raw["sent"] if drain > 0 else None,
    )


def probe(target: Target, body: bytes, expect: bytes, timeout: float = 15.0) -> str | None:
    """Send one request; None when the answer is a success holding `expect`, else why not.
    Bounded as a whole: a stream that never ends is a failure, not a hang."""
    request = urllib.request.Request(target.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **target.headers})
    deadline = time.monotonic() + timeout
    answer = b""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            while chunk := response.read1(65536):
                answer += chunk
                if time.monotonic() > deadline:
                    return f"HTTP {status} but the body did not end within {timeout:g}s: {answer[-200:]!r}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}: {error.read()[:300].decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as error:
        return f"no answer: {error}" + (f" after {answer[-200:]!r}" if answer else "")
    if status >= 300 or expect not in answer:
        return f"HTTP {status} without {expect.decode()!r}: {answer[:300].decode(errors='replace')}"
    return None
