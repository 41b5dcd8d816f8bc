"""What Vertex AI's auth hook costs a request: with a cached token (every request but one an hour per key
and worker) against the static bearer scheme, and a cold grant's CPU (key load and RS256 signature; the
token endpoint's answer is stubbed, so no network time is in it).

    PYTHONPATH=src python bench/vertex_auth.py
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any, Awaitable, Callable

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from modelport.providers.base import BEARER, StepAnswer, Target, UpstreamRequest
from modelport.providers.vertex.auth import VertexAuth

URL = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/m"
ROUNDS, CALLS = 5, 20_000


def service_account_json() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return orjson.dumps({"type": "service_account", "project_id": "p", "private_key_id": "0" * 40, "private_key": pem,
                         "client_email": "bench@p.iam.gserviceaccount.com",
                         "token_uri": "https://oauth2.googleapis.com/token"}).decode()


class StubTransport:
    async def fetch(self, request: UpstreamRequest, limit: int) -> StepAnswer:
        return StepAnswer(200, {}, b'{"access_token": "ya29.bench", "expires_in": 3599, "token_type": "Bearer"}')


async def interleaved(*calls: Callable[[], Awaitable[Any]]) -> list[float]:
    """Median µs per call of each, over ROUNDS rounds of CALLS calls that take turns (a busy machine
    slows both alike)."""
    rounds: list[list[float]] = [[] for _ in calls]
    for _ in range(ROUNDS):
        for times, call in zip(rounds, calls):
            started = time.perf_counter()
            for _ in range(CALLS):
                await call()
            times.append((time.perf_counter() - started) / CALLS * 1e6)
    return [statistics.median(times) for times in rounds]


async def main() -> None:
    transport = StubTransport()
    vertex = Target("vertex-ai", "https://aiplatform.googleapis.com/v1", settings={
        "vertex_region": "us-central1", "vertex_project_id": "p", "vertex_service_account_json": service_account_json()})
    openai = Target("openai", "https://api.openai.com/v1", api_key="sk-bench")
    auth = VertexAuth()
    started = time.perf_counter()
    await auth.authorize(UpstreamRequest("POST", URL, {}, b""), vertex, transport)
    cold = (time.perf_counter() - started) * 1e3
    cached, static = await interleaved(
        lambda: auth.authorize(UpstreamRequest("POST", URL, {}, b""), vertex, transport),
        lambda: BEARER.authorize(UpstreamRequest("POST", URL, {}, b""), openai, transport))
    print(f"cold grant (parse key, sign; endpoint stubbed): {cold:.1f} ms")
    print(f"authorize, cached token: {cached:.2f} µs per request (median of {ROUNDS} interleaved rounds of {CALLS:,})")
    print(f"authorize, static bearer key: {static:.2f} µs per request")


if __name__ == "__main__":
    asyncio.run(main())
