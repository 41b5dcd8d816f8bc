"""Real clients from PyPI and npm call Replicate through the gateway exactly as their docs show."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import replicate
from openai import OpenAI
from portkey_ai import Portkey, createHeaders

from tests.conftest import REPLICATE_TOKEN

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setenv("REPLICATE_POLL_INTERVAL", "0")


def replicate_client(gateway) -> replicate.Client:
    # replicate-python's base URL excludes /v1; its api_token is sent as Bearer: here the gateway key.
    return replicate.Client(api_token=gateway.admin_key, base_url=gateway.url,
                            headers={"x-portkey-provider": "@replicate-test"})


def test_replicate_run_polls_through_the_gateway(gateway, fake_replicate):
    _, state = fake_replicate
    state.script_next(sync_status="starting", polls=2)
    assert replicate_client(gateway).run("test/echo", input={"text": "through the gateway"}) == "through the gateway"
    polls = [r for r in state.requests if r.method == "GET" and r.path.startswith("/v1/predictions/")]
    assert polls and all(r.headers["Authorization"] == f"Bearer {REPLICATE_TOKEN}" for r in polls)


def test_replicate_run_by_version(gateway):
    client = replicate_client(gateway)
    version = client.models.get("test/echo").latest_version.id
    assert client.run(f"test/echo:{version}", input={"text": "pinned"}) == "pinned"


def test_replicate_stream_goes_through_the_signed_route(gateway, fake_replicate):
    _, state = fake_replicate
    events = list(replicate_client(gateway).stream("test/llm", input={"prompt": "alpha beta gamma"}))
    assert "".join(str(e) for e in events).split() == ["alpha", "beta", "gamma"]
    assert state.requests_to("/v1/streams/") or any(r.origin == "stream" for r in state.requests)


def test_replicate_pagination_follows_next_through_the_gateway(gateway, fake_replicate):
    client = replicate_client(gateway)
    for text in ("p1", "p2", "p3"):
        client.predictions.create(model="test/echo", input={"text": text})
    pages = list(replicate.paginate(client.predictions.list))
    assert len(pages) >= 2
    assert len({p.id for page in pages for p in page}) >= 3


def test_replicate_file_upload_and_use_as_input(gateway, fake_replicate, tmp_path):
    server, _ = fake_replicate
    path = tmp_path / "note.txt"
    path.write_text("file contents")
    client = replicate_client(gateway)
    uploaded = client.files.create(path)
    assert uploaded.urls["get"].startswith(server.url)  # left upstream: it goes into inputs
    assert uploaded.size == len("file contents")


def test_replicate_search_with_query_method(gateway):
    page = replicate_client(gateway).models.search("llm")
    assert any(model.name == "llm" for model in page.results)


def test_replicate_client_sees_the_gateways_401(gateway):
    client = replicate.Client(api_token="mp-not-a-real-key-000000000000000", base_url=gateway.url,
                              headers={"x-portkey-provider": "@replicate-test"})
    with pytest.raises(replicate.exceptions.ReplicateError) as failure:
        client.models.get("test/echo")
    assert failure.value.status == 401


def test_caller_brings_its_own_replicate_key(open_gateway, fake_replicate):
    server, state = fake_replicate
    client = replicate.Client(api_token=REPLICATE_TOKEN, base_url=open_gateway.url,
                              headers={"x-portkey-provider": "replicate", "x-portkey-custom-host": server.url + "/v1"})
    assert client.run("test/echo", input={"text": "byo"}) == "byo"


def test_portkey_python_sdk_post(gateway):
    portkey = Portkey(api_key=gateway.admin_key, base_url=gateway.v1, provider="@replicate-test")
    version = httpx.get(gateway.v1 + "/models/test/echo", headers=gateway.headers(**{"x-portkey-provider": "@replicate-test"})).json()["latest_version"]["id"]
    prediction = portkey.post(url="predictions", version=version, input={"text": "from portkey"})
    assert prediction.status in ("starting", "processing", "succeeded")
    assert prediction.urls["get"].startswith(gateway.v1)
    fetched = portkey.get(path=f"predictions/{prediction.id}")  # Portkey's get returns the raw httpx.Response
    assert fetched.status_code == 200 and fetched.json()["id"] == prediction.id


def test_openai_sdk_with_portkey_headers(gateway):
    client = OpenAI(api_key="unused-by-replicate", base_url=gateway.v1, max_retries=0,
                    default_headers=createHeaders(api_key=gateway.admin_key, provider="@replicate-test"))
    response = client.post("/models/test/echo/predictions", cast_to=httpx.Response,
                           body={"input": {"text": "from openai"}}, options={"headers": {"Prefer": "wait"}})
    assert response.status_code == 201
    assert response.json()["output"] == "from openai"


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_DIR / "node_modules" / "portkey-ai").exists(),
                    reason="node and tests/node/node_modules (npm ci in tests/node) are required")
def test_portkey_node_sdk_post(gateway):
    script = f"""
    const {{ Portkey }} = require('portkey-ai');
    const portkey = new Portkey({{ apiKey: {json.dumps(gateway.admin_key)}, baseURL: {json.dumps(gateway.v1)},
                                   provider: '@replicate-test' }});
    portkey.post('/models/test/echo/predictions', {{ input: {{ text: 'from node' }} }})
      .then(r => console.log(JSON.stringify(r)))
      .catch(e => {{ console.error(String(e)); process.exit(1); }});
    """
    result = subprocess.run(["node", "-e", script], cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    prediction = json.loads(result.stdout.strip().splitlines()[-1])
    assert prediction["id"] and prediction["urls"]["get"].startswith(gateway.v1)
