"""The fake Replicate API behaves like the real one for the real client and for raw HTTP.

Driven directly (no gateway) by replicate-python 1.0.7, httpx and aiohttp, so that gateway tests can
trust the fake as a stand-in for api.replicate.com and stream.replicate.com.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import aiohttp
import httpx
import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError
from replicate.pagination import paginate

from tests.fakes.replicate import make_replicate_app, start_fake_replicate
from tests.fakes.replicate_state import ReplicateState
from tests.fakes.server import FakeServer

TOKEN = "r8_test_token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fake() -> Iterator[tuple[FakeServer, ReplicateState]]:
    server, state = start_fake_replicate()
    yield server, state
    server.stop()


@pytest.fixture
def server(fake: tuple[FakeServer, ReplicateState]) -> FakeServer:
    return fake[0]


@pytest.fixture
def state(fake: tuple[FakeServer, ReplicateState]) -> ReplicateState:
    return fake[1]


@pytest.fixture
def http(server: FakeServer) -> Iterator[httpx.Client]:
    """One raw HTTP client per test: building an httpx client costs tens of milliseconds."""
    with httpx.Client(base_url=server.url) as raw:
        yield raw


@pytest.fixture
def client(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> replicate.Client:
    monkeypatch.setenv("REPLICATE_POLL_INTERVAL", "0")
    return replicate.Client(api_token=TOKEN, base_url=server.url)


def llm_version(state: ReplicateState) -> str:
    return state.models["test/llm"].versions[-1].id


def sse_events(text: str) -> list[dict[str, str]]:
    """Parse an SSE body independently of any client: one dict per event, data lines joined."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = f"{fields[name]}\n{value}" if name in fields else value
        if fields:
            events.append(fields)
    return events


# --- predictions with the real client ------------------------------------------------------------


def test_run_polls_until_succeeded(state, client):
    assert client.run("test/echo", input={"text": "hello"}, wait=False) == "hello"
    methods = [(r.method, r.path) for r in state.requests]
    prediction = state.predictions[0]
    assert methods == [
        ("POST", "/v1/models/test/echo/predictions"),
        ("GET", f"/v1/predictions/{prediction.id}"),
        ("GET", f"/v1/predictions/{prediction.id}"),
    ]
    assert prediction.status == "succeeded"
    assert prediction.metrics == {"predict_time": 1.5, "total_time": 1.75}


def test_poll_count_is_scriptable(state, client):
    state.polls_to_finish = 4
    client.run("test/echo", input={"text": "x"}, wait=False)
    assert len(state.requests_to("/v1/predictions/", "GET")) == 4


def test_run_by_owner_name_version_yields_iterator_output(state, client):
    version = llm_version(state)
    output = client.run(f"test/llm:{version}", input={"prompt": "tell me\na joke"})
    assert list(output) == ["tell", " me", "\na", " joke"]
    assert state.requests[0].json() == {"input": {"prompt": "tell me\na joke"}, "version": version}
    assert state.requests_to(f"/v1/models/test/llm/versions/{version}", "GET")


def test_fail_model_raises_model_error(client):
    with pytest.raises(ModelError, match="asked to fail"):
        client.run("test/fail", input={"text": "x"})


def test_image_outputs_are_served_by_the_fake_without_auth(server, client, http):
    urls = client.run("test/image", input={"prompt": "a cat", "num_outputs": 2})
    assert len(urls) == 2
    assert all(url.startswith(f"{server.url}/delivery/") for url in urls)
    image = http.get(urls[0])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_cancel_stops_a_running_prediction(client):
    prediction = client.predictions.create(model="test/echo", input={"text": "x"})
    prediction.reload()
    assert prediction.status == "processing"
    prediction.cancel()
    prediction.reload()
    assert prediction.status == "canceled"
    assert prediction.metrics["predict_time"] == 1.5


def test_pagination_follows_absolute_next(server, client):
    created = [client.predictions.create(model="test/echo", input={"text": str(i)}).id for i in range(5)]
    pages = list(paginate(client.predictions.list))
    assert [len(page.results) for page in pages] == [2, 2, 1]
    assert [p.id for page in pages for p in page.results] == created[::-1]
    assert pages[0].next.startswith(f"{server.url}/v1/predictions?cursor=")
    assert pages[0].previous is None and pages[1].previous.startswith(server.url)
    back = client.predictions.list(pages[1].previous)
    assert [p.id for p in back.results] == [p.id for p in pages[0].results]


def test_models_versions_and_search(state, client):
    model = client.models.get("test/llm")
    assert model.latest_version.id == llm_version(state)
    output = model.latest_version.openapi_schema["components"]["schemas"]["Output"]
    assert output["type"] == "array" and output["items"] == {"type": "string"}
    assert output["x-cog-array-type"] == "iterator"
    assert [v.id for v in model.versions.list()] == [llm_version(state)]
    assert [m.name for m in client.models.search("image").results] == ["image"]
    assert state.requests[-1].method == "QUERY" and state.requests[-1].body == b"image"


# --- sync mode -----------------------------------------------------------------------------------


def test_prefer_wait_returns_a_terminal_prediction(server, http):
    response = http.post(
        f"{server.url}/v1/models/test/llm/predictions",
        headers={**AUTH, "Prefer": "wait=5"},
        json={"input": {"prompt": "a b c", "predict_time": 3}},
    )
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "wait=5"
    assert "Location" not in response.headers
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["output"] == ["a", " b", " c"]
    assert body["metrics"]["predict_time"] == 3
    assert body["metrics"]["input_token_count"] == 3 and body["metrics"]["output_token_count"] == 3
    assert body["started_at"] and body["completed_at"]
    assert body["urls"]["get"] == f"{server.url}/v1/predictions/{body['id']}"


def test_incomplete_wait_returns_starting_with_location(server, state, http):
    state.script_next(run_seconds=5)
    started = time.monotonic()
    response = http.post(
        f"{server.url}/v1/models/test/echo/predictions",
        headers={**AUTH, "Prefer": "wait=1"},
        json={"input": {"text": "x"}},
    )
    assert 0.9 < time.monotonic() - started < 3
    body = response.json()
    assert body["status"] == "starting"
    assert response.headers["Location"] == f"{server.url}/v1/predictions/{body['id']}"


def test_sync_response_may_report_processing_with_full_output(server, state, http):
    state.script_next(sync_status="processing")
    body = http.post(
        f"{server.url}/v1/models/test/echo/predictions",
        headers={**AUTH, "Prefer": "wait"},
        json={"input": {"text": "x"}},
    ).json()
    assert (body["status"], body["output"], "metrics" in body) == ("processing", "x", False)
    polled = http.get(body["urls"]["get"], headers=AUTH).json()
    assert (polled["status"], polled["metrics"]["predict_time"]) == ("succeeded", 1.5)


def test_sync_create_can_give_up_and_leave_polling_to_the_client(state, client):
    state.script_next(sync_status="starting", polls=3)
    assert client.run("test/echo", input={"text": "slowly"}) == "slowly"
    assert len(state.requests_to("/v1/predictions/", "GET")) == 3


@pytest.mark.parametrize("prefer", ["wait=0", "wait=61", "wait=abc", "respond-async"])
def test_malformed_prefer_is_rejected(server, prefer, http):
    response = http.post(
        f"{server.url}/v1/models/test/echo/predictions",
        headers={**AUTH, "Prefer": prefer},
        json={"input": {"text": "x"}},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


def test_cancel_after_is_recorded_as_deadline(server, state, http):
    body = http.post(
        f"{server.url}/v1/models/test/echo/predictions",
        headers={**AUTH, "Cancel-After": "1m30s"},
        json={"input": {"text": "x"}},
    ).json()
    job = state.prediction(body["id"])
    assert (job.deadline - job.created_at).total_seconds() == 90
    assert body["deadline"].endswith("Z")


# --- body validation and errors ------------------------------------------------------------------


def test_unknown_top_level_keys_are_422_with_invalid_fields(server, state, http):
    response = http.post(
        f"{server.url}/v1/predictions",
        headers=AUTH,
        json={"version": llm_version(state), "input": {"prompt": "x"}, "signal": 1},
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["title"] == "Input validation failed"
    assert body["invalid_fields"] == [
        {
            "type": "additional_property_not_allowed",
            "field": "",
            "description": "Additional property signal is not allowed",
        }
    ]


def test_missing_version_and_input_are_422(server, http):
    response = http.post(f"{server.url}/v1/predictions", headers=AUTH, json={})
    assert response.status_code == 422
    assert {f["description"] for f in response.json()["invalid_fields"]} == {
        "version is required",
        "input is required",
    }
    model_route = http.post(
        f"{server.url}/v1/models/test/echo/predictions", headers=AUTH, json={"version": "x", "input": {}}
    )
    assert model_route.status_code == 422


def test_unknown_prediction_is_404_problem(server, http):
    response = http.get(f"{server.url}/v1/predictions/doesnotexist", headers=AUTH)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 404


def test_invalid_token_raises_with_the_verbatim_detail(server, monkeypatch):
    monkeypatch.setenv("REPLICATE_POLL_INTERVAL", "0")
    wrong = replicate.Client(api_token="r8_wrong", base_url=server.url)
    with pytest.raises(ReplicateError) as raised:
        wrong.run("test/echo", input={"text": "x"})
    assert raised.value.status == 401
    assert raised.value.detail == "You did not pass a valid authentication token"


def test_auth_accepts_bearer_and_token_and_nothing_else(server, http):
    url = f"{server.url}/v1/account"
    assert http.get(url, headers={"Authorization": f"Token {TOKEN}"}).status_code == 200
    for headers in (
        {},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer nope"},
    ):
        response = http.get(url, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json() == {
            "title": "Unauthenticated",
            "detail": "You did not pass a valid authentication token",
            "status": 401,
        }


# --- streaming -----------------------------------------------------------------------------------


def test_stream_yields_output_events_and_stops_at_done(state, client):
    events = list(client.stream("test/llm", input={"prompt": "one two\nthree"}))
    assert [(e.event.value, e.data) for e in events] == [
        ("output", "one"),
        ("output", " two"),
        ("output", "\nthree"),
        ("done", "{}"),
    ]
    assert state.requests[0].json()["stream"] is True
    stream_request = state.requests[-1]
    assert stream_request.origin == "stream" and stream_request.path.startswith("/v1/streams/")
    job = state.predictions[0]
    assert job.status == "succeeded"
    assert job.metrics["output_token_count"] == 3


def test_stream_lives_on_another_origin_and_needs_no_auth(server, http):
    created = http.post(
        f"{server.url}/v1/models/test/llm/predictions", headers=AUTH, json={"input": {"prompt": "a\nb c"}}
    ).json()
    stream_url = created["urls"]["stream"]
    assert urlsplit(stream_url).netloc != urlsplit(server.url).netloc
    assert urlsplit(stream_url).path.startswith("/v1/streams/")
    response = http.get(
        stream_url, headers={"Accept": "text/event-stream", "Authorization": "Bearer ignored"}
    )
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.startswith(": hi\n\n")
    events = sse_events(response.text)
    assert all("id" in event for event in events)
    assert [e["data"] for e in events if e["event"] == "output"] == ["a", "\nb", " c"]
    assert "data: \ndata: b\n" in response.text
    assert events[-1]["event"] == "done" and events[-1]["data"] == "{}"
    polled = http.get(created["urls"]["get"], headers=AUTH).json()
    assert polled["status"] == "succeeded" and polled["metrics"]["predict_time"] == 2.5


def test_stream_resumes_after_last_event_id(server, http):
    created = http.post(
        f"{server.url}/v1/models/test/llm/predictions", headers=AUTH, json={"input": {"prompt": "a b c d"}}
    ).json()
    first = sse_events(http.get(created["urls"]["stream"]).text)
    resumed = sse_events(http.get(created["urls"]["stream"], headers={"Last-Event-ID": first[1]["id"]}).text)
    assert [e["data"] for e in resumed] == [" c", " d", "{}"]


def test_failed_stream_sends_error_then_done(state, client, http):
    state.script_next(outcome="failed", error="CUDA out of memory")
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        list(client.stream("test/llm", input={"prompt": "a b c d"}))
    created = state.predictions[0]
    text = http.get(f"{state.stream_origin}/v1/streams/{created.stream_token}").text
    assert [e["event"] for e in sse_events(text)] == ["output", "output", "error", "done"]
    assert sse_events(text)[-1]["data"] == '{"reason": "error"}'
    assert created.status == "failed"


def test_stream_connection_can_be_reset_mid_stream(server, state, http):
    state.reset_next(path="/v1/streams/", after_events=2)
    state.stream_event_delay = 0.01
    created = http.post(
        f"{server.url}/v1/models/test/llm/predictions", headers=AUTH, json={"input": {"prompt": "a b c d"}}
    ).json()
    received = []
    with (
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
        http.stream("GET", created["urls"]["stream"]) as response,
    ):
        received.extend(response.iter_lines())
    assert "data: a" in received and "data: c" not in received
    assert state.prediction(created["id"]).status == "processing"


# --- files ---------------------------------------------------------------------------------------


def test_files_create_get_list_delete(server, client):
    content = b"some bytes\n" * 100
    created = client.files.create(io.BytesIO(content), filename="notes.txt", metadata={"owner": "me"})
    assert (created.name, created.content_type, created.size) == ("notes.txt", "text/plain", len(content))
    assert created.checksums == {
        "sha256": hashlib.sha256(content).hexdigest(),
        "md5": hashlib.md5(content).hexdigest(),
    }
    assert created.etag == created.checksums["md5"]
    assert created.metadata == {"owner": "me"}
    assert created.urls["get"] == f"{server.url}/v1/files/{created.id}"
    assert client.files.get(created.id).id == created.id
    assert [f.id for f in client.files.list()] == [created.id]
    assert client.files.delete(created.id) is True
    with pytest.raises(ReplicateError) as raised:
        client.files.get(created.id)
    assert raised.value.status == 404


def test_upload_over_the_limit_is_413():
    server, state = start_fake_replicate(max_upload_bytes=1000)
    try:
        response = httpx.post(
            f"{server.url}/v1/files", headers=AUTH, files={"content": ("big.bin", b"x" * 5000)}
        )
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"] == "Files must be less than 100MB in size"
        assert state.files == {}
        assert state.requests[-1].body_size > 5000
    finally:
        server.stop()


class Zeros(io.RawIOBase):
    """A file of ``size`` zero bytes that exists only as it is read."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc")
def test_a_100mb_upload_is_hashed_as_it_streams(server, state, http):
    size = 100 * 2**20
    peak, done = [resident_mib()], threading.Event()

    def watch() -> None:
        while not done.wait(0.005):
            peak.append(resident_mib())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        response = http.post(
            "/v1/files", headers=AUTH, files={"content": ("zeros.bin", Zeros(size))}, timeout=60
        )
    finally:
        done.set()
        watcher.join()
    assert response.status_code == 201
    assert response.json()["size"] == size
    expected = hashlib.sha256()
    for _ in range(100):
        expected.update(bytes(2**20))
    assert response.json()["checksums"]["sha256"] == expected.hexdigest()
    # The fake shares this process: a buffered 100 MB body would show here.
    assert max(peak) - peak[0] < 40


# --- other resources -----------------------------------------------------------------------------


def test_deployments_expose_hardware_and_run_predictions(state, client):
    deployment = client.deployments.get("test/llm-prod")
    assert deployment.current_release.configuration.hardware == "gpu-a40-large"
    prediction = client.deployments.predictions.create("test/llm-prod", input={"prompt": "hi"})
    assert (prediction.model, state.prediction(prediction.id).deployment) == ("test/llm", "test/llm-prod")
    created = client.deployments.create(
        name="echo-cpu",
        model="test/echo",
        version=state.models["test/echo"].versions[-1].id,
        hardware="cpu",
        min_instances=0,
        max_instances=1,
    )
    assert created.current_release.number == 1
    updated = client.deployments.update("test", "echo-cpu", hardware="gpu-t4")
    assert (updated.current_release.number, updated.current_release.configuration.hardware) == (2, "gpu-t4")
    assert {d.name for d in client.deployments.list()} == {"llm-prod", "echo-cpu"}


def test_trainings_create_urls_point_at_predictions_then_trainings(server, state, client):
    training = client.trainings.create(
        model="test/llm", version=llm_version(state), input={"steps": 1}, destination="test/echo"
    )
    assert training.urls["get"] == f"{server.url}/v1/predictions/{training.id}"
    assert client.trainings.get(training.id).urls["get"] == f"{server.url}/v1/trainings/{training.id}"
    done = client.trainings.get(training.id)
    assert done.status == "succeeded" and done.output["version"].startswith("test/echo:")
    with pytest.raises(ReplicateError, match="destination does not exist"):
        client.trainings.create(
            model="test/llm", version=llm_version(state), input={}, destination="test/nope"
        )


def test_account_hardware_collections_and_webhook_secret(server, client, http):
    assert client.accounts.current().username == "test"
    hardware = http.get(f"{server.url}/v1/hardware", headers=AUTH).json()
    assert (
        isinstance(hardware, list) and {"sku": "gpu-a40-large", "name": "Nvidia A40 (Large) GPU"} in hardware
    )
    assert [c.slug for c in client.collections.list()] == ["text-generation", "image-generation"]
    assert [m.name for m in client.collections.get("text-generation")] == ["llm", "echo"]
    assert client.webhooks.default.secret().key.startswith("whsec_")


async def test_get_responses_are_gzip_with_ratelimit_and_allow_headers(server):
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(f"{server.url}/v1/models", headers={**AUTH, "Accept-Encoding": "gzip"}) as response,
    ):
        raw = await response.read()
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Allow"] == "GET, POST, QUERY"
        assert (response.headers["ratelimit-remaining"], response.headers["ratelimit-reset"]) == (
            "2999",
            "1",
        )
    assert b'"results"' in gzip.decompress(raw)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.url}/v1/models/test/echo/predictions", headers=AUTH, json={"input": {"text": "x"}}
        ) as response,
    ):
        assert response.status == 201
        assert "Content-Encoding" not in response.headers
        assert response.headers["ratelimit-remaining"] == "599"


def test_a_plain_fake_server_uses_its_socket_origin():
    app = make_replicate_app()
    with FakeServer(app) as server:
        body = httpx.post(
            f"{server.url}/v1/models/test/echo/predictions", headers=AUTH, json={"input": {"text": "x"}}
        ).json()
        assert body["urls"]["get"] == f"{server.url}/v1/predictions/{body['id']}"


# --- failure knobs and the request record --------------------------------------------------------


def test_throttling_is_429_problem_json_with_retry_after(server, state, client, http):
    state.fail_next(429, path="/v1/models/test/echo/predictions", retry_after=7)
    response = http.post(
        f"{server.url}/v1/models/test/echo/predictions", headers=AUTH, json={"input": {"text": "x"}}
    )
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {
        "detail": "Request was throttled. Your rate limit resets in ~7s.",
        "status": 429,
        "retry_after": 7,
    }
    state.fail_next(429, path="/v1/models/test/echo/predictions", retry_after=0)
    with pytest.raises(ReplicateError) as raised:
        client.predictions.create(model="test/echo", input={"text": "x"})
    assert raised.value.status == 429


def test_client_retries_throttled_gets(state, client):
    state.fail_next(429, times=2, path="/v1/models/test/echo", method="GET", retry_after=0)
    assert client.models.get("test/echo").name == "echo"
    assert len(state.requests_to("/v1/models/test/echo", "GET")) == 3


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_answer_problem_json(server, state, status, http):
    state.fail_next(status, path="/v1/account")
    response = http.get(f"{server.url}/v1/account", headers=AUTH)
    assert response.status_code == status
    assert response.json()["status"] == status
    assert http.get(f"{server.url}/v1/account", headers=AUTH).status_code == 200


def test_delay_and_reset_before_answering(server, state, http):
    state.delay_next(0.3, path="/v1/account")
    started = time.monotonic()
    assert http.get(f"{server.url}/v1/account", headers=AUTH).status_code == 200
    assert time.monotonic() - started >= 0.3
    state.reset_next(path="/v1/account")
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        http.get(f"{server.url}/v1/account", headers=AUTH)


def test_every_request_is_recorded(server, state, http):
    http.post(
        f"{server.url}/v1/models/test/echo/predictions?x=%2F1", headers=AUTH, json={"input": {"text": "abc"}}
    )
    recorded = state.requests[-1]
    assert (recorded.method, recorded.path_qs, recorded.origin) == (
        "POST",
        "/v1/models/test/echo/predictions?x=%2F1",
        "api",
    )
    assert recorded.headers["Authorization"] == f"Bearer {TOKEN}"
    assert recorded.body_size == len(b'{"input":{"text":"abc"}}') == len(recorded.body)


@pytest.fixture
def receiver():
    from tests.fakes.webhook_receiver import WebhookReceiver

    with WebhookReceiver() as hooks:
        yield hooks


def test_a_prediction_with_a_webhook_runs_by_itself_and_posts_signed_events(server, receiver, http):
    created = http.post("/v1/models/test/echo/predictions", headers=AUTH,
                        json={"input": {"text": "hi"}, "webhook": receiver.hook()}).json()
    assert created["webhook"] == receiver.hook()
    got = receiver.wait_for(lambda got: any(r.json()["status"] == "succeeded" for r in got))
    assert [r.json()["id"] for r in got] == [created["id"]] * len(got)
    assert got[0].json()["status"] in ("starting", "processing")
    secret = replicate.Client(api_token=TOKEN, base_url=server.url).webhooks.default.secret()
    for event in got:
        assert replicate.Client().webhooks.validate(headers=event.headers, body=event.body.decode(), secret=secret) is None


def test_the_events_filter_limits_webhooks_and_only_the_final_one_is_retried(state, receiver, http):
    receiver.answer_next(500, times=2)
    created = http.post("/v1/models/test/echo/predictions", headers=AUTH,
                        json={"input": {"text": "hi"}, "webhook": receiver.hook(), "webhook_events_filter": ["completed"]})
    got = receiver.wait_for(lambda got: len(got) == 3)
    assert {r.json()["status"] for r in got} == {"succeeded"}
    assert len({r.headers["webhook-id"] for r in got}) == 1  # one event, retried with its id
    deliveries = [d for d in state.webhook_deliveries if d.json()["id"] == created.json()["id"]]
    assert [d.status for d in deliveries] == [500, 500, 200]
    receiver.answer_next(500)
    http.post("/v1/models/test/echo/predictions", headers=AUTH,
              json={"input": {"text": "hi"}, "webhook": receiver.hook("start"), "webhook_events_filter": ["start"]})
    time.sleep(0.5)
    assert [r.path for r in receiver.received].count("/start") == 1  # a failed start event is not retried
