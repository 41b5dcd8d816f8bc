"""Keys sharing one stored Replicate account see only what they created (replicate_isolate_predictions)."""

from __future__ import annotations

import http.client
import json

import httpx
import pytest
import replicate

from tests.conftest import REPLICATE_TOKEN, replicate_provider
from tests.harness import GatewayProcess
from tests.pg_support import MASTER_KEY, fresh_database, need_psycopg

SLUG = {"x-portkey-provider": "@replicate-test"}
NOT_FOUND = {"title": "Not found", "detail": "Not found.", "status": 404}


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setenv("REPLICATE_POLL_INTERVAL", "0")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request, tmp_path_factory, fake_replicate):
    """Every test of the module on each store: the owners of objects live in the store, so isolation must
    hold the same on the embedded SQLite and on a PostgreSQL database shared by nodes."""
    if request.param == "sqlite":
        yield request.getfixturevalue("gateway")  # the suite's session gateway (tests/conftest.py)
        return
    need_psycopg()
    with fresh_database() as url:
        settings = {"database_url": url}
        env = {"MODELPORT_MASTER_KEY": MASTER_KEY, "MODELPORT_SIGNING_SECRET": "isolation-test-signing-secret-0123456789"}
        with own_gateway(tmp_path_factory, fake_replicate, "isolation-pg", settings=settings, extra_env=env) as process:
            yield process


def tenant(gateway, name: str) -> httpx.Client:
    """A fresh inference key on the shared @replicate-test account, as an HTTP client."""
    answer = httpx.post(gateway.v1 + "/api-keys", headers=gateway.headers(),
                        json={"name": name, "scopes": ["inference"]})
    assert answer.status_code == 200, answer.text
    key = answer.json()["key"]
    return httpx.Client(base_url=gateway.v1, headers={"x-portkey-api-key": key, **SLUG}, timeout=20)


@pytest.fixture
def alice(gateway):
    with tenant(gateway, "alice") as client:
        yield client


@pytest.fixture
def bob(gateway):
    with tenant(gateway, "bob") as client:
        yield client


@pytest.fixture
def admin(gateway):
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(**SLUG), timeout=20) as client:
        yield client


def create(client: httpx.Client, text: str = "mine", model: str = "test/echo") -> dict:
    created = client.post(f"/models/{model}/predictions", json={"input": {"text" if model == "test/echo" else "prompt": text}})
    assert created.status_code == 201, created.text
    return created.json()


def assert_replicate_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND
    assert response.headers["content-type"] == "application/problem+json"
    assert "x-portkey-gateway-exception" not in response.headers


def test_a_prediction_is_seen_only_by_the_key_that_created_it(alice, bob, admin, fake_replicate):
    _, state = fake_replicate
    prediction = create(alice)
    assert alice.get(f"/predictions/{prediction['id']}").status_code == 200  # polled at once: already known
    asked = len(state.requests_to(f"/v1/predictions/{prediction['id']}"))
    assert_replicate_not_found(bob.get(f"/predictions/{prediction['id']}"))
    assert_replicate_not_found(bob.post(f"/predictions/{prediction['id']}/cancel"))
    assert len(state.requests_to(f"/v1/predictions/{prediction['id']}")) == asked  # Replicate was not asked
    assert state.prediction(prediction["id"]).status != "canceled"
    assert admin.get(f"/predictions/{prediction['id']}").json()["id"] == prediction["id"]
    assert alice.post(f"/predictions/{prediction['id']}/cancel").status_code == 200


def test_objects_made_outside_the_gateway_are_for_admin_keys_only(alice, admin, fake_replicate):
    server, _ = fake_replicate
    direct = httpx.post(server.url + "/v1/models/test/echo/predictions", json={"input": {"text": "direct"}},
                        headers={"Authorization": f"Bearer {REPLICATE_TOKEN}"}).json()
    assert_replicate_not_found(alice.get(f"/predictions/{direct['id']}"))
    assert admin.get(f"/predictions/{direct['id']}").status_code == 200


def test_a_training_belongs_to_its_creator_at_both_of_its_paths(alice, bob, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/llm", polls=100)  # never ends here: a finished training adds a version
    version = state.models["test/llm"].versions[-1].id
    created = alice.post(f"/models/test/llm/versions/{version}/trainings",
                         json={"input": {"steps": 1}, "destination": "test/llm"})
    assert created.status_code == 201, created.text
    training = created.json()
    for path in (f"/trainings/{training['id']}", f"/predictions/{training['id']}"):
        assert alice.get(path).json()["id"] == training["id"]
        assert_replicate_not_found(bob.get(path))
    assert_replicate_not_found(bob.post(f"/trainings/{training['id']}/cancel"))
    assert [t["id"] for t in alice.get("/trainings").json()["results"]] == [training["id"]]
    assert alice.post(f"/trainings/{training['id']}/cancel").json()["status"] == "canceled"


def test_the_official_client_pages_through_exactly_its_own_predictions(gateway, alice, bob, fake_replicate):
    _, state = fake_replicate
    mine = {create(alice, f"a{i}")["id"] for i in range(3)}
    theirs = {create(bob, f"b{i}")["id"] for i in range(3)}
    client = replicate.Client(api_token=alice.headers["x-portkey-api-key"], base_url=gateway.url,
                              headers=dict(SLUG))  # a copy: the client adds its Authorization to the dict it is given
    before = len(pages_asked(state))
    pages = list(replicate.paginate(client.predictions.list))
    seen = [p.id for page in pages for p in page]
    assert sorted(seen) == sorted(mine) and not theirs & set(seen)
    assert len(pages_asked(state)) - before >= 2  # the fake paged (2 a page) and every page came through the gateway
    page = alice.get("/predictions").json()
    assert page["next"] is None or page["next"].startswith(gateway.v1 + "/predictions?cursor=")


def pages_asked(state) -> list:
    return [r for r in state.requests_to("/v1/predictions", "GET") if "cursor=" in r.path_qs]


def test_an_admin_key_lists_everyones_predictions(alice, bob, admin):
    ids = {create(alice)["id"], create(bob)["id"]}
    seen, page = set(), admin.get("/predictions").json()
    seen |= {p["id"] for p in page["results"]}
    while page["next"]:
        page = admin.get(page["next"]).json()
        seen |= {p["id"] for p in page["results"]}
    assert ids <= seen


def upload(client: httpx.Client, name: str = "note.txt") -> dict:
    uploaded = client.post("/files", files={"content": (name, b"private notes", "text/plain")})
    assert uploaded.status_code == 201, uploaded.text
    return uploaded.json()


def test_a_file_is_seen_only_by_the_key_that_uploaded_it(alice, bob, fake_replicate):
    _, state = fake_replicate
    file = upload(alice)
    assert alice.get(f"/files/{file['id']}").json()["id"] == file["id"]
    assert_replicate_not_found(bob.get(f"/files/{file['id']}"))
    assert_replicate_not_found(bob.delete(f"/files/{file['id']}"))
    assert file["id"] in state.files  # Bob's delete never reached Replicate
    theirs = upload(bob)["id"]
    listed = [f["id"] for f in alice.get("/files").json()["results"]]
    assert file["id"] in listed and theirs not in listed
    assert alice.delete(f"/files/{file['id']}").status_code == 204


def test_another_keys_file_url_in_a_prediction_input_is_refused(alice, bob, fake_replicate):
    _, state = fake_replicate
    url = upload(alice)["urls"]["get"]  # the account's URL (it stays upstream: inputs carry it)
    creates = len(state.requests_to("/v1/models/test/echo/predictions", "POST"))
    refused = bob.post("/models/test/echo/predictions", json={"input": {"text": url}})
    assert refused.status_code == 400, refused.text
    assert refused.headers["x-portkey-gateway-exception"] == "true"
    assert refused.json()["error"]["code"] == "file_not_owned" and url in refused.json()["error"]["message"]
    canonical = url.replace(url.split("/v1/")[0], "https://api.replicate.com")  # as replicate-python writes it
    assert bob.post("/models/test/echo/predictions", json={"input": {"text": canonical}}).status_code == 400
    assert len(state.requests_to("/v1/models/test/echo/predictions", "POST")) == creates  # nothing sent upstream
    assert alice.post("/models/test/echo/predictions", json={"input": {"text": url}}).status_code == 201


def test_only_admin_keys_read_the_accounts_webhook_secret(alice, bob, admin):
    account = admin.get("/webhooks/default/secret").json()["key"]
    assert account.startswith("whsec_")
    own = alice.get("/webhooks/default/secret")  # its relay secret instead (test_replicate_webhooks.py)
    assert own.status_code == 200 and own.json()["key"].startswith("whsec_")
    assert own.json()["key"] not in (account, bob.get("/webhooks/default/secret").json()["key"])


def test_a_stream_link_is_a_capability_only_its_owner_can_obtain(alice, bob):
    prediction = alice.post("/models/test/llm/predictions", json={"input": {"prompt": "one two"}, "stream": True}).json()
    link = prediction["urls"]["stream"]
    assert_replicate_not_found(bob.get(f"/predictions/{prediction['id']}"))  # no way to the link for Bob
    assert prediction["id"] not in {p["id"] for p in bob.get("/predictions").json()["results"]}
    with httpx.stream("GET", link, headers={"Accept": "text/event-stream"}, timeout=20) as streamed:  # no key
        assert streamed.status_code == 200
        assert "one" in streamed.read().decode()
    assert alice.get(f"/predictions/{prediction['id']}").json()["urls"]["stream"].startswith(link.split("/streams/")[0])


def own_gateway(tmp_path_factory, fake_replicate, name: str, extra_env: dict[str, str] | None = None,
                **options) -> GatewayProcess:
    return GatewayProcess(tmp_path_factory.mktemp(name) / "data", providers=[replicate_provider(fake_replicate[0].url)],
                          env={"TEST_REPLICATE_TOKEN": REPLICATE_TOKEN, **(extra_env or {})}, **options)


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory, fake_replicate):
    with own_gateway(tmp_path_factory, fake_replicate, "shared", settings={"replicate_isolate_predictions": False}) as process:
        yield process


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, fake_replicate):
    with own_gateway(tmp_path_factory, fake_replicate, "workers", workers=2) as process:
        yield process


def test_every_worker_knows_the_owner_as_soon_as_the_create_answers(two_workers):
    with tenant(two_workers, "alice") as alice, tenant(two_workers, "bob") as bob:
        prediction = create(alice)
        for _ in range(8):  # a new connection each time: SO_REUSEPORT spreads them over both workers
            assert alice.get(f"/predictions/{prediction['id']}", headers={"connection": "close"}).status_code == 200
            assert bob.get(f"/predictions/{prediction['id']}", headers={"connection": "close"}).status_code == 404


def test_with_isolation_off_every_key_on_the_account_sees_every_prediction(shared_gateway):
    with tenant(shared_gateway, "alice") as alice, tenant(shared_gateway, "bob") as bob:
        prediction = create(alice)
        assert bob.get(f"/predictions/{prediction['id']}").json()["id"] == prediction["id"]


def test_a_file_url_spelled_another_way_is_refused_too(alice, bob):
    url = upload(alice)["urls"]["get"]
    origin, _, path = url.partition("/v1/")
    for spelling in (origin.upper() + "/v1/" + path,                               # the host's case
                     f"{origin}/v1/./files/../files/{path.rsplit('/', 1)[1]}",      # dot segments
                     f"{origin}/v1/%66iles/{path.rsplit('/', 1)[1]}"):              # a percent-escape
        refused = bob.post("/models/test/echo/predictions", json={"input": {"text": spelling}})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "file_not_owned", spelling


@pytest.mark.parametrize("path", ["/%70redictions/{id}", "/%70redictions", "/predictions/%{hex_first}{rest}"])
def test_a_percent_escaped_path_is_refused_for_a_tenant(gateway, alice, bob, path):
    prediction = create(alice)
    named = path.format(id=prediction["id"], hex_first=f"{ord(prediction['id'][0]):02x}", rest=prediction["id"][1:])
    # http.client sends the path as written (httpx would normalise it first).
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    connection.request("GET", "/v1" + named, headers=dict(bob.headers))
    refused = connection.getresponse()
    body = json.loads(refused.read())
    connection.close()
    assert refused.status == 400 and body["error"]["code"] == "path_not_plain"
    assert refused.getheader("x-portkey-gateway-exception") == "true"


def test_a_doubled_slash_lists_only_the_callers_own_predictions_too(gateway, alice, bob):
    prediction = create(alice)
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    connection.request("GET", "/v1//predictions", headers=dict(bob.headers))
    listed = json.loads(connection.getresponse().read())
    connection.close()
    assert prediction["id"] not in {p["id"] for p in listed["results"]}
