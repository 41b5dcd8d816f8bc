"""OpenAI image generation over Replicate models: n as num_outputs or as n predictions, size as the nearest
aspect ratio the model allows, delivery URLs untouched or fetched and encoded, each prediction priced once."""

from __future__ import annotations

import base64
import time

import httpx
import openai
import pytest

from tests.fakes.replicate_catalog import png
from tests.harness import GatewayProcess
from tests.test_logging import one_log, trace
from tests.test_replicate_cost import start_gateway

SLUG = {"x-portkey-provider": "@replicate-test"}
PER_IMAGE = {"test/image": 0.01, "test/flux": 0.003}


def priced_gateway(tmp, fake_replicate, fake_openai, **settings) -> GatewayProcess:
    prices = {"official": {name: {"per_image": price} for name, price in PER_IMAGE.items()}}
    return start_gateway(tmp, fake_replicate, fake_openai, prices, **settings)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_replicate, fake_openai):
    """The fake's delivery host is on loopback, which the SSRF rules refuse for output URLs: this gateway
    allows private hosts so that b64_json can fetch them."""
    process = priced_gateway(tmp_path_factory.mktemp("replicate-images"), fake_replicate, fake_openai,
                             allow_private_hosts=True)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def guarded_gateway(tmp_path_factory, fake_replicate, fake_openai):
    process = priced_gateway(tmp_path_factory.mktemp("replicate-images-guarded"), fake_replicate, fake_openai)
    yield process
    process.stop()


def images(gateway: GatewayProcess, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=gateway.v1, max_retries=0, timeout=30,
                         default_headers={"x-portkey-api-key": gateway.admin_key, **SLUG, **headers})


def test_n_becomes_num_outputs_where_the_model_declares_it(gateway, fake_replicate):
    server, state = fake_replicate
    before = len(state.predictions)
    reply = images(gateway).images.generate(model="test/image", prompt="a red square", n=3, size="1024x1024")
    assert len(state.predictions) == before + 1
    job = state.predictions[-1]
    assert job.input == {"prompt": "a red square", "num_outputs": 3}  # test/image declares no aspect_ratio, size dropped
    assert [image.url for image in reply.data] == [f"{server.url}/delivery/{job.id}/out-{i}.png" for i in range(3)]


def test_without_num_outputs_n_runs_n_predictions_and_size_picks_the_nearest_ratio(gateway, fake_replicate):
    _, state = fake_replicate
    before = len(state.predictions)
    reply = images(gateway).images.generate(model="test/flux", prompt="a wide view", n=2, size="1792x1024")
    made = state.predictions[before:]
    assert len(made) == 2 and all(job.input == {"prompt": "a wide view", "aspect_ratio": "16:9"} for job in made)
    assert sorted(image.url.rsplit("/", 2)[1] for image in reply.data) == sorted(job.id for job in made)
    tall = images(gateway).images.generate(model="test/flux", prompt="a tower", size="1024x1536")
    assert state.predictions[-1].input["aspect_ratio"] == "2:3" and len(tall.data) == 1


def test_b64_json_fetches_and_encodes_the_outputs(gateway, fake_replicate):
    _, state = fake_replicate
    reply = images(gateway).images.generate(model="test/image", prompt="two", n=2, response_format="b64_json")
    job = state.predictions[-1]
    assert [base64.b64decode(image.b64_json) for image in reply.data] == [png(f"{job.id}/out-{i}.png") for i in range(2)]
    delivered = state.requests_to(f"/delivery/{job.id}/")
    assert len(delivered) == 2 and all("Authorization" not in r.headers for r in delivered)  # no credential to outputs


def test_b64_json_refuses_an_output_url_on_a_private_address(guarded_gateway):
    with pytest.raises(openai.InternalServerError) as raised:
        images(guarded_gateway).images.generate(model="test/image", prompt="x", response_format="b64_json")
    assert raised.value.status_code == 502 and raised.value.response.headers["x-portkey-gateway-exception"] == "true"
    url = images(guarded_gateway).images.generate(model="test/image", prompt="x").data[0].url
    assert url.startswith("http://127.0.0.1:")  # a URL is handed on untouched; only fetching it is guarded


def test_b64_json_is_bounded(gateway, monkeypatch):
    import tests.fakes.replicate_resources as resources

    monkeypatch.setattr(resources, "png", lambda seed: b"\x00" * (17 * 1024 * 1024))  # past the 16 MiB bound
    with pytest.raises(openai.InternalServerError) as raised:
        images(gateway).images.generate(model="test/image", prompt="big", response_format="b64_json")
    assert raised.value.code == "image_too_large" and "response_format 'url'" in raised.value.message


def test_strict_compliance_names_a_parameter_the_model_cannot_take(gateway, fake_replicate):
    _, state = fake_replicate
    before = len(state.predictions)
    strict = images(gateway, **{"x-portkey-strict-open-ai-compliance": "true"})
    with pytest.raises(openai.BadRequestError) as raised:
        strict.images.generate(model="test/image", prompt="x", size="512x512")
    assert "'size'" in raised.value.message and "test/image" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        strict.images.generate(model="test/flux", prompt="x", quality="hd")
    assert "'quality'" in raised.value.message
    assert len(state.predictions) == before


def test_a_failed_image_prediction_is_a_502(gateway, fake_replicate):
    _, state = fake_replicate
    state.script_next(model="test/flux", outcome="failed", error="NSFW content detected")
    with pytest.raises(openai.InternalServerError) as raised:
        images(gateway).images.generate(model="test/flux", prompt="x")
    assert raised.value.code == "prediction_failed" and "NSFW content detected" in raised.value.message


def test_each_prediction_of_a_call_is_priced_once_on_its_record(gateway, fake_replicate):
    _, state = fake_replicate
    trace_id = trace()
    before = len(state.predictions)
    images(gateway).images.generate(model="test/flux", prompt="three", n=3, extra_headers={"x-portkey-trace-id": trace_id})
    row = one_log(gateway, trace_id)
    assert row["endpoint"] == "images" and row["cost_usd"] == pytest.approx(3 * PER_IMAGE["test/flux"])
    made = [job.id for job in state.predictions[before:]]
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=20) as admin:
        for prediction_id in made:
            view = admin.get(f"/logs/predictions/{prediction_id}").json()
            assert view["cost_usd"] == pytest.approx(PER_IMAGE["test/flux"]) and view["ended_on_log_id"] == row["id"]
            assert [step["step"] for step in view["lifecycle"]] == ["images"]


def test_a_client_that_leaves_has_every_running_prediction_canceled(gateway, fake_replicate):
    _, state = fake_replicate
    for _ in range(2):
        state.script_next(model="test/flux", sync_status="starting", polls=1000)
    before = len(state.predictions)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.v1 + "/images/generations", headers=gateway.headers(**SLUG), timeout=2,
                   json={"model": "test/flux", "prompt": "slow", "n": 2})
    made = state.predictions[before:]
    deadline = time.monotonic() + 10
    while any(job.status != "canceled" for job in made) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(made) == 2 and [job.status for job in made] == ["canceled", "canceled"]
