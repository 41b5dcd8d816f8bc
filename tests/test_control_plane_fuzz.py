"""schemathesis over the control plane's own OpenAPI document, against a real gateway process: whatever
it generates — valid, invalid, odd encodings — is answered without a server error, in the error shape the
document publishes, and the gateway keeps serving with nothing logged at error level."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.harness import GatewayProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("fuzz") / "data") as process:
        yield process
        assert httpx.get(process.url + "/health").status_code == 200  # still serving after all of it
        log = process.log_text()
        assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


@pytest.fixture(scope="module")
def control_schema(fuzzed: GatewayProcess):
    schema = schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")
    schema.config.generation.update(max_examples=25, deterministic=True)
    return schema


schema = schemathesis.pytest.from_fixture("control_schema")


# schemathesis runs every operation as a subtest of this one test, so pytest's timeout covers all of them:
# ~30 s of CPU on a quiet machine, but three to four times that while the suite shares the two cores.
@pytest.mark.timeout(600)
@schema.parametrize()
def test_the_control_plane_never_fails_and_answers_in_its_published_shapes(case, fuzzed: GatewayProcess) -> None:
    case.call_and_validate(base_url=fuzzed.v1, headers=fuzzed.headers(),
                           checks=[not_a_server_error, response_schema_conformance])
