"""The dashboard's Predictions page in a real Chromium against a real gateway and the fake Replicate: one
row per prediction with its cost in readable units, its lifecycle as a timeline, and the links between a
prediction and its log records both ways."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import GatewayProcess
from tests.test_dashboard import browser, page, sign_in  # noqa: F401  (the real-browser fixtures)
from tests.test_prediction_view import ended
from tests.test_replicate_cost import client, run_to_end, start_gateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_replicate, fake_openai) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("dashboard-predictions"), fake_replicate, fake_openai,
                            {"models": {"test/echo": "cpu"}})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def finished(gateway) -> dict:
    """A prediction run to its end through the gateway, once its end is recorded."""
    prediction = run_to_end(gateway, "/models/test/echo/predictions", {"input": {"text": "for the dashboard"}})
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=20) as admin:
        return ended(admin, prediction["id"], records=4)


def row(page, prediction_id: str):  # noqa: F811
    return page.locator(f'table.predictions-table tbody tr[data-id="{prediction_id}"]')


def test_a_prediction_is_one_row_with_its_cost_and_opens_on_its_lifecycle(page, gateway, finished):  # noqa: F811
    sign_in(page, gateway, "/dashboard/predictions")
    found = row(page, finished["id"])
    found.wait_for()
    cells = found.locator("td").all_inner_texts()
    assert cells[1] == "succeeded" and cells[2] == "test/echo" and cells[3] == "1.50 s"
    assert cells[4] == "0.015¢"  # 1.5 s of cpu at $0.0001/s, in readable units
    assert found.locator("td:nth-child(5) .money").get_attribute("title").startswith("$0.00015")  # exact, on hover
    assert cells[5] == finished["key_id"] and cells[6] != "—"
    assert page.locator(".sidebar a.active").inner_text() == "Predictions"

    found.click()
    panel = page.locator("aside.detail", has_text=finished["id"])
    panel.wait_for()
    assert page.url.endswith(f"/dashboard/predictions/{finished['id']}")
    steps = panel.locator("ol.lifecycle > li")
    assert [s.get_attribute("data-step") for s in steps.all()] == ["create", "poll", "poll", "poll"]
    priced = panel.locator("ol.lifecycle > li.saw-end")
    assert priced.count() == 1 and "end seen, priced" in priced.inner_text() and "saw succeeded" in priced.inner_text()
    assert "saw starting" in steps.nth(0).inner_text() and "POST" in steps.nth(0).inner_text()
    cost = panel.locator("section", has_text="Reason").inner_text()
    assert "0.015¢" in cost and "cpu" in cost and "priced" in cost

    priced.locator("a.request-line").click()  # the record that saw the end, in the logs
    log_panel = page.locator("aside.detail", has_text="Cost and usage")
    log_panel.wait_for()
    assert page.url.endswith(f"/dashboard/logs/{finished['ended_on_log_id']}")
    log_panel.locator("a.prediction-link").click()  # and back to the prediction from the log record
    page.locator("aside.detail ol.lifecycle").wait_for()
    assert page.url.endswith(f"/dashboard/predictions/{finished['id']}")
    page.keyboard.press("Escape")
    page.locator("aside.detail").wait_for(state="hidden")


def test_a_running_prediction_is_not_priced_yet_and_filters_stay_in_the_url(page, gateway, finished):  # noqa: F811
    with client(gateway) as http:
        running = http.post("/models/test/echo/predictions", json={"input": {"text": "still going"}}).json()
    sign_in(page, gateway, "/dashboard/predictions")
    row(page, running["id"]).wait_for()
    cells = row(page, running["id"]).locator("td").all_inner_texts()
    assert cells[1] == "starting" and cells[4] == "running" and cells[6] == "—"

    page.select_option("form.filters select[name=status]", "succeeded")
    page.wait_for_url(re.compile(r"status=succeeded"))
    row(page, running["id"]).wait_for(state="detached")
    row(page, finished["id"]).wait_for()
    statuses = page.locator("table.predictions-table tbody tr td:nth-child(2)").all_inner_texts()
    assert statuses and set(statuses) == {"succeeded"}
    page.reload()
    row(page, finished["id"]).wait_for()
    assert page.input_value("form.filters select[name=status]") == "succeeded"
    page.fill("form.filters input[name=model]", "test/none")
    page.press("form.filters input[name=model]", "Enter")
    page.locator("table.predictions-table td.empty", has_text="No predictions match").wait_for()
    page.click("form.filters button:has-text('Clear')")
    row(page, running["id"]).wait_for()


def test_a_webhooks_events_and_their_relays_are_steps_of_its_lifecycle(page, gateway):  # noqa: F811
    # Issue 13: each event Replicate posted and each delivery attempt to the caller are visible here.
    from tests.fakes.webhook_receiver import WebhookReceiver

    with WebhookReceiver() as receiver, client(gateway) as http:
        created = http.post("/models/test/echo/predictions",
                            json={"input": {"text": "with a webhook"}, "webhook": receiver.hook()})
        assert created.status_code == 201, created.text
        prediction_id = created.json()["id"]
        view = with_steps(gateway, prediction_id, {"webhook received", "webhook delivery"})
    sign_in(page, gateway, f"/dashboard/predictions/{prediction_id}")
    panel = page.locator("aside.detail", has_text=prediction_id)
    panel.wait_for()
    shown = [s.get_attribute("data-step") for s in panel.locator("ol.lifecycle > li").all()]
    # Later records may have landed since the API was read: the page shows at least every step it had.
    had = [step["step"] for step in view["lifecycle"]]
    assert all(shown.count(step) >= had.count(step) for step in had), (shown, had)
    assert shown[0] == "create" and "webhook received" in shown and "webhook delivery" in shown
    delivery = panel.locator('ol.lifecycle > li[data-step="webhook delivery"]').first
    assert "200" in delivery.inner_text()  # the receiver's answer to the relay


def with_steps(gateway, prediction_id: str, wanted: set[str], timeout: float = 20) -> dict:
    """The prediction view once its lifecycle holds every step in ``wanted``."""
    import time

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=gateway.v1, headers=gateway.headers(), timeout=20) as admin:
        while True:
            reply = admin.get(f"/logs/predictions/{prediction_id}")
            if reply.status_code == 200 and wanted <= {s["step"] for s in reply.json()["lifecycle"]}:
                return reply.json()
            assert time.monotonic() < deadline, f"{prediction_id}: {reply.status_code} {reply.text[:500]}"
            time.sleep(0.1)
