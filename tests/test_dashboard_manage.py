"""Managing the gateway from the dashboard, end to end in a real Chromium: keys, stored providers and saved
configs, each action through the control-plane API (so its rules and its error messages are the ones
shown), with a confirmation before anything that cannot be undone; and the usage bars of their limits.

A gateway of its own: these tests create, rotate, revoke and mark configs default, which must not leak
into the read-only suites that share the session gateway.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import OPENAI_KEY, stored
from tests.harness import ADMIN_KEY, GatewayProcess
from tests.test_rate_limits import away_from_a_minute_boundary
from tests.test_dashboard import browser, page, sign_in  # noqa: F401  (the real-browser fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai) -> Iterator[GatewayProcess]:
    providers = [stored("openai-test", "openai", "TEST_OPENAI_KEY", fake_openai[0].url + "/v1")]
    with GatewayProcess(tmp_path_factory.mktemp("manage") / "data", providers=providers,
                        env={"TEST_OPENAI_KEY": OPENAI_KEY}) as process:
        yield process


def chat(gateway: GatewayProcess, key: str) -> None:
    response = httpx.post(gateway.v1 + "/chat/completions", timeout=20,
                          headers={"x-portkey-api-key": key, "x-portkey-provider": "@openai-test"},
                          json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text


@pytest.fixture
def requested(page) -> list[str]:  # noqa: F811
    """Every URL the page asks for: no secret may ever travel in one."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def api(gateway: GatewayProcess, method: str, path: str, key: str = ADMIN_KEY, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, gateway.v1 + path, headers={"x-portkey-api-key": key}, timeout=10, **kwargs)


def open_form(page: Any, button: str) -> Any:
    page.click(f"button:has-text('{button}')")
    form = page.locator("dialog.form")
    form.wait_for()
    return form


def submit(form: Any) -> None:
    form.locator("button[type=submit]").click()


def confirm(page: Any, verb: str) -> None:
    page.locator("dialog.confirm button.danger", has_text=verb).click()
    page.locator("dialog.confirm").wait_for(state="detached")


def row(page: Any, text: str) -> Any:
    return page.locator("table.grid tbody tr", has_text=text)


def secret_once(page: Any) -> str:
    shown = page.locator("dialog.secret-once code.secret")
    shown.wait_for()
    return shown.inner_text()


def test_a_key_is_created_rotated_and_revoked_with_its_secret_shown_once(page, gateway, requested):  # noqa: F811
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    name = "dash-" + uuid.uuid4().hex[:8]
    sign_in(page, gateway, "/dashboard/keys")
    form = open_form(page, "New key")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=scopes]").fill("logs.read")
    submit(form)

    secret = secret_once(page)
    assert secret.startswith("mp-")
    page.click("dialog.secret-once button.copy")
    page.locator("dialog.secret-once [role=status]", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    page.click("dialog.secret-once button:has-text('Done')")
    row(page, name).wait_for()
    assert secret not in page.content()  # gone with the dialog: never shown again
    assert api(gateway, "GET", "/logs", secret, params={"limit": 1}).status_code == 200  # a real key, as scoped

    row(page, name).locator("button", has_text="Rotate").click()
    page.click("dialog.confirm button:has-text('Cancel')")  # the confirmation is a real choice
    assert api(gateway, "GET", "/logs", secret, params={"limit": 1}).status_code == 200
    row(page, name).locator("button", has_text="Rotate").click()
    confirm(page, "Rotate")
    rotated = secret_once(page)
    page.click("dialog.secret-once button:has-text('Done')")
    assert rotated != secret
    assert api(gateway, "GET", "/logs", secret, params={"limit": 1}).status_code == 401
    assert api(gateway, "GET", "/logs", rotated, params={"limit": 1}).status_code == 200

    row(page, name).locator("button", has_text="Revoke").click()
    confirm(page, "Revoke")
    row(page, name).locator(".tag.key-revoked").wait_for()
    assert api(gateway, "GET", "/logs", rotated, params={"limit": 1}).status_code == 401
    page.reload()
    row(page, name).wait_for()
    assert secret not in page.content() and rotated not in page.content()
    assert not [url for url in requested if secret in url or rotated in url or ADMIN_KEY in url]


def test_the_key_form_shows_the_apis_refusal_in_its_words(page, gateway):  # noqa: F811
    name = "refused-" + uuid.uuid4().hex[:8]
    expected = api(gateway, "POST", "/api-keys", json={"name": name, "scopes": ["logs.reed"]}).json()["error"]["message"]
    sign_in(page, gateway, "/dashboard/keys")
    form = open_form(page, "New key")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=scopes]").fill("logs.reed")
    submit(form)
    form.locator(".form-error", has_text=expected).wait_for()
    form.locator("textarea[name=rate_limits]").fill('[{"type": "requests", "unit": "rpm", "value": 20}')
    form.locator("input[name=scopes]").fill("inference")
    submit(form)
    form.locator(".form-error", has_text="not valid JSON").wait_for()  # syntax is checked before sending
    form.locator("textarea[name=rate_limits]").fill('[{"type": "requests", "unit": "rpm", "value": 20}]')
    submit(form)
    secret_once(page)
    page.click("dialog.secret-once button:has-text('Done')")
    row(page, name).wait_for()
    (stored,) = [key for key in api(gateway, "GET", "/api-keys").json()["data"] if key["name"] == name]
    assert stored["scopes"] == ["inference"] and stored["rate_limits"] == [{"type": "requests", "unit": "rpm", "value": 20}]


def test_providers_are_added_edited_and_removed_with_the_secret_write_only(page, gateway, requested):  # noqa: F811
    slug = "dash-" + uuid.uuid4().hex[:8]
    secret = "sk-dashboard-" + uuid.uuid4().hex
    sign_in(page, gateway, "/dashboard/providers")
    section = page.locator("section.group[data-kind='virtual key']")
    section.locator("button", has_text="Add virtual key").click()
    form = page.locator("dialog.form")
    form.locator("input[name=name]").fill("Dashboard test")
    form.locator("input[name=provider]").fill("azure-openai")
    form.locator("input[name=slug]").fill(slug)
    form.locator("input[name=key]").fill(secret)
    submit(form)  # Azure needs a resource name (or a custom host): the API says so, the form shows it
    form.locator(".form-error", has_text="resourceName").wait_for()
    form.locator("input[name=custom_host]").fill("http://10.1.2.3/v1")
    submit(form)
    form.locator(".form-error", has_text="10.1.2.3").wait_for()  # the SSRF rules apply here too
    form.locator("input[name=custom_host]").fill("https://llm.example.com/openai")
    submit(form)
    added = row(page, f"@{slug}")
    added.wait_for()
    hint = api(gateway, "GET", f"/virtual-keys/{slug}").json()["masked_api_key"]
    assert hint and hint in added.inner_text() and "https://llm.example.com/openai" in added.inner_text()

    added.locator("button", has_text="Edit").click()
    form = page.locator("dialog.form")
    assert form.locator("input[name=key]").input_value() == ""  # never filled in: the page never has it
    assert form.locator("input[name=custom_host]").input_value() == "https://llm.example.com/openai"
    form.locator("input[name=note]").fill("edited in the dashboard")
    submit(form)
    row(page, "edited in the dashboard").wait_for()
    after = api(gateway, "GET", f"/virtual-keys/{slug}").json()
    assert after["note"] == "edited in the dashboard" and after["masked_api_key"] == hint  # blank kept the secret
    assert secret not in page.content()

    row(page, f"@{slug}").locator("button", has_text="Remove").click()
    confirm(page, "Remove")
    row(page, f"@{slug}").wait_for(state="detached")
    assert api(gateway, "GET", f"/virtual-keys/{slug}").status_code == 404
    assert not [url for url in requested if secret in url]


def test_configs_are_saved_validated_made_default_and_archived(page, gateway):  # noqa: F811
    name = "dash-config-" + uuid.uuid4().hex[:6]
    bad = {"strategy": {"mode": "sideways"}, "targets": [{"provider": "openai"}]}
    expected = api(gateway, "POST", "/configs", json={"name": name, "config": bad}).json()["error"]["message"]
    sign_in(page, gateway, "/dashboard/configs")
    form = open_form(page, "New config")
    form.locator("input[name=name]").fill(name)
    form.locator("textarea[name=config]").fill(json.dumps(bad))
    submit(form)
    form.locator(".form-error", has_text=expected).wait_for()
    good = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}, {"provider": "anthropic"}]}
    form.locator("textarea[name=config]").fill(json.dumps(good))
    submit(form)
    saved = row(page, name)
    saved.wait_for()
    assert "fallback" in saved.inner_text()

    saved.locator("button", has_text="Make default").click()
    row(page, name).locator(".tag.default").wait_for()
    (stored,) = [c for c in api(gateway, "GET", "/configs").json()["data"] if c["name"] == name]
    assert stored["is_default"] == 1 and stored["config"] == good

    row(page, name).locator("button", has_text="Edit").click()
    form = page.locator("dialog.form")
    assert json.loads(form.locator("textarea[name=config]").input_value()) == good
    form.locator("textarea[name=config]").fill(json.dumps({**good, "retry": {"attempts": 2}}))
    submit(form)
    page.locator("dialog.form").wait_for(state="detached")
    assert api(gateway, "GET", f"/configs/{stored['id']}").json()["config"]["retry"] == {"attempts": 2}

    row(page, name).locator("button", has_text="Archive").click()
    row(page, name).locator(".tag.config-archived").wait_for()
    assert api(gateway, "GET", f"/configs/{stored['id']}").json()["status"] == "archived"

    row(page, name).locator("button", has_text="Delete").click()
    page.click("dialog.confirm button:has-text('Cancel')")
    assert api(gateway, "GET", f"/configs/{stored['id']}").status_code == 200
    row(page, name).locator("button", has_text="Delete").click()
    confirm(page, "Delete")
    row(page, name).wait_for(state="detached")
    assert api(gateway, "GET", f"/configs/{stored['id']}").status_code == 404


def test_usage_bars_show_each_limit_and_budget_as_the_api_reports_them(page, gateway):  # noqa: F811
    name = "limited-" + uuid.uuid4().hex[:8]
    created = api(gateway, "POST", "/api-keys", json={
        "name": name, "rate_limits": [{"type": "requests", "unit": "rpm", "value": 5}],
        "usage_limits": {"type": "tokens", "credit_limit": 100000, "alert_threshold": 1}}).json()
    away_from_a_minute_boundary()  # the two requests and the page read in one rpm window (it failed at :59)
    chat(gateway, created["key"])
    chat(gateway, created["key"])
    sign_in(page, gateway, "/dashboard/keys")
    usage = row(page, name).locator(".usage")
    usage.wait_for()
    reported = api(gateway, "GET", f"/api-keys/{created['id']}").json()["usage"]
    requests, budget = usage.locator(".usage-bar").all()
    assert "requests per minute" in requests.inner_text() and "2 / 5" in requests.inner_text()
    assert "resets" in requests.inner_text()
    assert float(requests.locator(".usage-fill").evaluate("node => parseFloat(node.style.width)")) == 40.0
    tokens = int(reported["budget"]["used"])
    assert tokens > 0 and f"{tokens} tokens / 100k tokens" in budget.inner_text()
    assert reported["budget"]["alerted"] and "alert threshold reached" in budget.inner_text()

    # A provider's limits are set from its form (through the API) and shown the same way.
    page.goto(gateway.url + "/dashboard/providers")
    row(page, "@openai-test").locator("button", has_text="Edit").click()
    form = page.locator("dialog.form")
    form.locator("textarea[name=rate_limits]").fill('[{"type": "requests", "unit": "rph", "value": 50}]')
    form.locator("textarea[name=usage_limits]").fill('{"type": "cost", "credit_limit": 5}')
    submit(form)
    form.wait_for(state="detached")
    chat(gateway, ADMIN_KEY)
    page.reload()
    provider = row(page, "@openai-test").locator(".usage")
    provider.wait_for()
    rate, money = provider.locator(".usage-bar").all()
    assert "requests per hour" in rate.inner_text() and "1 / 50" in rate.inner_text()
    assert "budget (USD" in money.inner_text() and "/ $5" in money.inner_text()
    assert "e-" not in money.get_attribute("title") and "of $5 used" in money.get_attribute("title")  # exact, readable
    assert api(gateway, "GET", "/providers/openai-test").json()["usage_limits"] == {"type": "cost", "credit_limit": 5}
