"""The web dashboard at /dashboard: its static files as served by a real gateway, and the page itself in a
real headless Chromium (Debian's, driven by Playwright) against a real gateway and fake upstreams.

The browser tests are marked ``slow``; they skip when Playwright or the system Chromium is missing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.harness import ADMIN_KEY, GatewayProcess

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"
REPLICATE = {"x-portkey-provider": "@replicate-test"}
OPENAI = {"x-portkey-provider": "@openai-test"}


# -- the static files ------------------------------------------------------------------------------
def test_dashboard_serves_the_page_and_its_modules(gateway):
    page = httpx.get(gateway.url + "/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    modules = re.findall(r'src="(/dashboard/[^"]+\.js)"', page.text)
    styles = re.findall(r'href="(/dashboard/[^"]+\.css)"', page.text)
    assert modules == ["/dashboard/app.js"] and styles == ["/dashboard/app.css"]
    script = httpx.get(gateway.url + "/dashboard/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert httpx.get(gateway.url + "/dashboard/app.css").headers["content-type"] == "text/css; charset=utf-8"
    assert httpx.get(gateway.url + "/dashboard/favicon.svg").headers["content-type"] == "image/svg+xml"


def test_every_module_the_page_imports_is_served(gateway):
    """Follow the import graph from app.js: a module missing from the package breaks the page offline."""
    seen: set[str] = set()
    pending = ["app.js"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        response = httpx.get(f"{gateway.url}/dashboard/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("text/javascript"), name
        imports = re.findall(r'^import .* from "\./([\w-]+\.js)";$', response.text, re.MULTILINE)
        assert not re.search(r'from "(https?:)?//', response.text), f"{name} imports from another origin"
        pending.extend(imports)
    assert {"app.js", "api.js", "logs.js", "detail.js", "overview.js", "charts.js"} <= seen


def test_unknown_dashboard_paths_get_the_page_for_client_routing(gateway):
    index = httpx.get(gateway.url + "/dashboard").text
    for path in ("/dashboard/", "/dashboard/logs", "/dashboard/logs/log_0123abcd", "/dashboard/keys"):
        response = httpx.get(gateway.url + path)
        assert response.status_code == 200, path
        assert response.text == index
    assert httpx.get(gateway.url + "/dashboard/nothing-here.js").status_code == 404
    # Only files packaged under static/ are ever served: a path that climbs out names nothing.
    assert httpx.get(gateway.url + "/dashboard/%2e%2e/serve.py").status_code == 404
    assert httpx.get(gateway.url + "/dashboard/%2e%2e/%2e%2e/server/app").text == index
    assert httpx.get(gateway.url + "/dashboardx").status_code == 404


def test_unchanged_files_revalidate_with_304(gateway):
    first = httpx.get(gateway.url + "/dashboard/app.js")
    assert first.headers["cache-control"] == "no-cache"
    etag = first.headers["etag"]
    again = httpx.get(gateway.url + "/dashboard/app.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = httpx.get(gateway.url + "/dashboard/app.css", headers={"if-none-match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag


def test_dashboard_files_are_static_and_locked_down(gateway):
    """The page manages keys, providers and configs, but only through /v1's control plane (same rules as the
    CLI): its own route serves files and takes nothing."""
    head = httpx.head(gateway.url + "/dashboard/app.js")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(httpx.get(gateway.url + "/dashboard/app.js").content)
    posted = httpx.post(gateway.url + "/dashboard", content=b"key=mp-test")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
    page = httpx.get(gateway.url + "/dashboard")
    policy = page.headers["content-security-policy"]
    # The page holds an admin key: no inline or foreign scripts, no talking to other origins.
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy
    assert "form-action 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


# -- the page in a real browser --------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh profile; Playwright is only the driver."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no system Chromium at {CHROMIUM}")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True, args=args,
            viewport={"width": 1440, "height": 900}, device_scale_factor=1,
        )
        yield context
        context.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    page = browser.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert not errors, f"the page threw: {errors}"


def sign_in(page: Any, gateway: GatewayProcess, path: str = "/dashboard") -> None:
    page.goto(gateway.url + path)
    page.fill("#signin-key", ADMIN_KEY)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#shell", state="visible")


def row_for(page: Any, trace_id: str) -> Any:
    return page.locator("table.logs-table tbody tr", has_text=trace_id)


def make_prediction(gateway: GatewayProcess, trace_id: str) -> dict[str, Any]:
    headers = gateway.headers(**REPLICATE, **{"x-portkey-trace-id": trace_id,
                                              "x-portkey-metadata": json.dumps({"suite": "dashboard"})})
    with httpx.Client(base_url=gateway.v1, headers=headers, timeout=20) as client:
        version = client.get("/models/test/echo").json()["latest_version"]["id"]
        created = client.post("/predictions", json={"version": version, "input": {"text": "from the dashboard test"}})
    assert created.status_code == 201, created.text
    return created.json()


def make_chat(gateway: GatewayProcess, trace_id: str) -> None:
    response = httpx.post(gateway.v1 + "/chat/completions", timeout=20,
                          headers=gateway.headers(**OPENAI, **{"x-portkey-trace-id": trace_id}),
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
    assert response.status_code == 200, response.text


@pytest.mark.slow
def test_sign_in_checks_the_key_and_never_puts_it_in_a_url(page, gateway):
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(gateway.url + "/dashboard/logs")
    page.fill("#signin-key", "mp-not-a-real-key")
    page.press("#signin-key", "Enter")
    page.wait_for_selector("#signin-error:has-text('not accepted')")
    assert page.is_hidden("#shell")
    page.fill("#signin-key", ADMIN_KEY)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("table.logs-table")
    assert page.evaluate("sessionStorage.getItem('modelport.adminKey')") == ADMIN_KEY
    page.reload()  # the session survives a reload of the tab
    page.wait_for_selector("table.logs-table")
    page.click("#signout")
    page.wait_for_selector("#signin", state="visible")
    assert page.evaluate("sessionStorage.getItem('modelport.adminKey')") is None
    assert page.input_value("#signin-key") == ""
    assert urls and not [url for url in urls if ADMIN_KEY in url or "mp-not-a-real-key" in url]


@pytest.mark.slow
def test_a_request_just_made_appears_live_and_opens_in_detail(page, gateway):
    sign_in(page, gateway, "/dashboard/logs")
    page.wait_for_selector("table.logs-table tbody tr")
    trace_id = "dash-" + uuid.uuid4().hex[:12]
    prediction = make_prediction(gateway, trace_id)  # made after the page loaded: live mode must bring it in
    row = row_for(page, trace_id).filter(has_text="/v1/predictions")
    row.wait_for(timeout=15_000)
    assert "replicate" in row.inner_text() and "201" in row.inner_text()

    row.click()
    detail = page.locator("aside.detail")
    detail.wait_for(state="visible")
    detail.locator("h2", has_text="/v1/predictions").wait_for()
    assert re.search(r"/dashboard/logs/log_\w+", page.url)
    text = detail.inner_text()
    assert trace_id in text
    assert prediction["id"] in text  # the response body, pretty-printed
    assert '"suite": "dashboard"' in text  # metadata
    detail.locator("h3", has_text="Attempts (1)").wait_for()
    assert "replicate @replicate-test" in detail.locator("ol.timeline").inner_text()
    assert re.search(r"\b(priced|estimated|unpriced)\b", detail.locator("section", has_text="Cost and usage").inner_text())
    assert ADMIN_KEY not in text and "r8_test_token" not in text  # headers are shown redacted

    page.keyboard.press("Escape")
    detail.wait_for(state="hidden")
    assert page.url.endswith("/dashboard/logs")
    page.go_back()  # the detail is a route: back opens it again
    detail.wait_for(state="visible")


@pytest.mark.slow
def test_filtering_by_provider_shows_only_that_provider(page, gateway):
    tag = uuid.uuid4().hex[:8]
    make_prediction(gateway, f"rep-{tag}")
    make_chat(gateway, f"oai-{tag}")
    sign_in(page, gateway, "/dashboard/logs")
    row_for(page, f"oai-{tag}").wait_for()
    row_for(page, f"rep-{tag}").first.wait_for()

    page.fill("form.filters input[name=provider]", "openai")
    page.press("form.filters input[name=provider]", "Enter")
    page.wait_for_url(re.compile(r"provider=openai"))
    row_for(page, f"rep-{tag}").first.wait_for(state="detached")
    row_for(page, f"oai-{tag}").wait_for()
    providers = page.locator("table.logs-table tbody tr td:nth-child(3)").all_inner_texts()
    assert providers and all(text.startswith("openai") for text in providers)

    with page.expect_download() as download:  # the export takes the same filters
        page.click("button:has-text('Export CSV')")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert f"oai-{tag}" in {row["trace_id"] for row in exported}
    assert {row["provider"] for row in exported} == {"openai"}

    page.reload()  # filters live in the URL: a reload (or a bookmark) keeps them
    row_for(page, f"oai-{tag}").wait_for()
    assert page.input_value("form.filters input[name=provider]") == "openai"
    page.click("form.filters button:has-text('Clear')")
    row_for(page, f"rep-{tag}").first.wait_for()


@pytest.mark.slow
def test_errors_only_filter(page, gateway):
    trace_id = "down-" + uuid.uuid4().hex[:8]
    failed = httpx.get(gateway.v1 + "/account", timeout=20,
                       headers=gateway.headers(**{"x-portkey-provider": "@replicate-down", "x-portkey-trace-id": trace_id}))
    assert failed.status_code >= 500
    sign_in(page, gateway, "/dashboard/logs?errors=1")
    row_for(page, trace_id).wait_for()
    statuses = page.locator("table.logs-table tbody tr td:nth-child(2)").all_inner_texts()
    assert statuses and all(status == "ERR" or int(status) >= 400 for status in statuses)


@pytest.mark.slow
def test_overview_providers_and_keys_pages(page, gateway):
    make_chat(gateway, "overview-" + uuid.uuid4().hex[:8])
    sign_in(page, gateway)
    page.wait_for_selector(".charts figure.chart svg")
    assert page.locator(".cards .card").count() == 5
    assert page.locator(".charts figure.chart").count() == 4
    page.locator(".group", has_text="Providers").locator("tbody tr", has_text="openai").wait_for()
    page.locator(".group", has_text="Providers").locator("tbody tr", has_text="openai").click()
    page.wait_for_url(re.compile(r"/dashboard/logs\?.*provider=openai"))

    page.click(".sidebar a[data-route=providers]")
    page.locator("section.group tr", has_text="@replicate-test").first.wait_for()
    providers_text = page.inner_text("#page")
    assert "r8_test_token" not in providers_text and "sk-test-openai" not in providers_text

    page.click(".sidebar a[data-route=keys]")
    admin = page.locator("table.grid tbody tr", has_text="admin").first
    admin.wait_for()
    assert "active" in admin.inner_text() and ADMIN_KEY not in page.inner_text("#page")


# -- 100,000 rows ----------------------------------------------------------------------------------
SEEDED_ROWS = 100_000

# (provider, slug, endpoint, path, model, typical latency ms, $ per 1k input tokens, $ per 1k output tokens)
TRAFFIC = [
    ("openai", "openai-prod", "chat", "/v1/chat/completions", "gpt-4o-mini", 650, 0.00015, 0.0006),
    ("openai", "openai-prod", "chat", "/v1/chat/completions", "gpt-4o", 1400, 0.0025, 0.01),
    ("openai", "openai-prod", "embeddings", "/v1/embeddings", "text-embedding-3-small", 120, 0.00002, 0.0),
    ("anthropic", "anthropic-main", "messages", "/v1/messages", "claude-3-5-sonnet-20241022", 2100, 0.003, 0.015),
    ("anthropic", "anthropic-main", "chat", "/v1/chat/completions", "claude-3-5-haiku-20241022", 900, 0.0008, 0.004),
    ("google", "gemini", "chat", "/v1/chat/completions", "gemini-2.0-flash", 700, 0.0001, 0.0004),
    ("replicate", "replicate-team", "proxy", "/v1/models/black-forest-labs/flux-schnell/predictions",
     "black-forest-labs/flux-schnell", 1800, None, None),
    ("replicate", "replicate-team", "proxy", "/v1/predictions", "meta/meta-llama-3-8b-instruct", 450, 0.00005, 0.00025),
    ("cohere", "cohere", "chat", "/v1/chat/completions", "command-r-plus", 1600, 0.0025, 0.01),
]
WEIGHTS = [34, 8, 12, 10, 9, 8, 7, 6, 6]
KEY_NAMES = ("search-backend", "support-bot", "batch-jobs", "notebooks")
COLUMNS = ("id, trace_id, created_at, key_id, key_name, provider, slug, endpoint, method, path, model, status, latency_ms, "
           "upstream_latency_ms, request_bytes, response_bytes, cache_status, gateway_exception, error, stream, "
           "prediction_id, input_tokens, output_tokens, total_tokens, cost_usd, cost_status, cost_reason, retry_count, "
           "last_used_index, metadata, attempts, usage, request_headers, response_headers, request_body, response_body, "
           "request_content_type, response_content_type")


def seeded_row(rng: random.Random, now_ms: int, index: int, keys: list[tuple[str, str]]) -> tuple[Any, ...]:
    """One plausible request over the last seven days: busier by day, an incident on one provider."""
    while True:
        age_ms = int(rng.expovariate(1 / (2.5 * 86_400_000)))
        created = now_ms - 5_000 - age_ms
        hour = created // 3_600_000 % 24  # UTC, as time.gmtime(created / 1000).tm_hour, at a tenth of the cost
        if age_ms < 7 * 86_400_000 and rng.random() < 0.35 + 0.65 * (8 <= hour <= 20):
            break
    provider, slug, endpoint, path, model, typical, price_in, price_out = rng.choices(TRAFFIC, WEIGHTS)[0]
    key_id, key_name = rng.choice(keys)
    incident = provider == "anthropic" and 5 * 3_600_000 < now_ms - created < 6 * 3_600_000
    roll = rng.random()
    status = 502 if incident and roll < 0.45 else 429 if roll < 0.012 else 500 if roll < 0.017 else 400 if roll < 0.022 else 200
    if provider == "replicate" and status == 200:
        status = 201
    latency = rng.lognormvariate(0, 0.45) * typical * (0.15 if status >= 400 else 1)
    retries = 1 if status == 200 and rng.random() < 0.02 else 0
    started = created / 1000
    attempts = [{"index": "config.targets[0]", "provider": provider, "slug": slug, "started_at": started,
                 "latency_ms": round(latency, 2), "status": status, "retry": 0, "error": None}]
    if retries:
        attempts.insert(0, {"index": "config.targets[0]", "provider": provider, "slug": slug, "started_at": started,
                            "latency_ms": 30.0, "status": 503, "retry": 0, "error": "upstream unavailable"})
        attempts[1].update(retry=1, started_at=started + 0.2)
    tokens_in = tokens_out = None
    cost, cost_status, reason = None, "unpriced", "no price known for this model"
    if status < 400 and price_in is not None:
        tokens_in = int(rng.lognormvariate(6, 0.8))
        tokens_out = 0 if endpoint == "embeddings" else int(rng.lognormvariate(5, 0.7))
        cost, cost_status, reason = tokens_in / 1000 * price_in + tokens_out / 1000 * price_out, "priced", "token prices"
    elif status < 400 and rng.random() < 0.8:
        predict = rng.uniform(0.8, 3.0)
        cost, cost_status, reason = predict * 0.000225, "estimated", f"{predict:.2f} s on gpu-t4 (default hardware assumed)"
    error = {502: "upstream connection refused", 429: "rate limit exceeded", 500: "provider internal error",
             400: "invalid request: messages must not be empty"}.get(status)
    trace = uuid.UUID(int=rng.getrandbits(128)).hex
    request_body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": f"question {index}"}]})
    response_body = orjson.dumps({"id": f"chatcmpl-{index}", "object": "chat.completion", "model": model,
                                  "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}})
    return (
        f"log_{index:024x}", trace, created, key_id, key_name, provider, slug, endpoint, "POST", path, model, status,
        round(latency + rng.uniform(1, 4), 2), round(latency, 2), len(request_body), len(response_body),
        "HIT" if rng.random() < 0.03 else "MISS", int(status == 502 and incident and roll < 0.05), error,
        int(rng.random() < 0.2), None, tokens_in, tokens_out,
        None if tokens_in is None else tokens_in + tokens_out, cost, cost_status, reason, retries, "config.targets[0]",
        dumps({"team": key_name.split("-")[0], "env": "prod"}), dumps(attempts),
        dumps({"prompt_tokens": tokens_in, "completion_tokens": tokens_out}) if tokens_in is not None else None,
        dumps({"content-type": "application/json", "x-portkey-api-key": "[redacted]"}),
        dumps({"content-type": "application/json"}), request_body, response_body,
        "application/json", "application/json",
    )


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()  # json.dumps was half the time of seeding 100k rows


def seed_logs(db_path: Path, rows: int, keys: list[tuple[str, str]]) -> None:
    """Raw SQL in the contract's schema, as another writer (or an older version) would have left it."""
    rng = random.Random(20240501)
    now_ms = int(time.time() * 1000)
    placeholders = ", ".join("?" * len(COLUMNS.split(", ")))
    with sqlite3.connect(db_path, timeout=30) as db:
        db.executemany(f"INSERT INTO logs ({COLUMNS}) VALUES ({placeholders})",
                       (seeded_row(rng, now_ms, index, keys) for index in range(rows)))
    db.close()


@pytest.fixture(scope="module")
def seeded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway of its own (its own data dir) whose logs hold a week of traffic from four real keys."""
    with GatewayProcess(tmp_path_factory.mktemp("seeded") / "data") as process:
        keys = []
        for name in KEY_NAMES:
            created = httpx.post(process.v1 + "/api-keys", headers=process.headers(), json={"name": name})
            assert created.status_code == 200, created.text
            keys.append((created.json()["id"], name))
        seed_logs(process.data_dir / "modelport.db", SEEDED_ROWS, keys)
        yield process


@pytest.mark.slow
def test_logs_page_renders_its_first_page_of_100k_rows_fast(page, seeded_gateway):
    sign_in(page, seeded_gateway)
    page.wait_for_selector(".charts figure.chart svg")
    for path in ("/dashboard/logs", "/dashboard/logs?provider=anthropic&errors=1"):
        started = time.perf_counter()
        page.goto(seeded_gateway.url + path)
        page.locator("table.logs-table tbody tr[data-id]").nth(99 if "errors" not in path else 0).wait_for()
        elapsed = time.perf_counter() - started
        print(f"{path}: first page in {elapsed:.3f} s")
        assert elapsed < 2.0, f"{path} took {elapsed:.2f} s"
    statuses = page.locator("table.logs-table tbody tr td:nth-child(2)").all_inner_texts()
    assert all(int(status) >= 400 for status in statuses)
    rows_before = page.locator("table.logs-table tbody tr[data-id]").count()
    page.click("button:has-text('Load more')")
    page.locator("table.logs-table tbody tr[data-id]").nth(rows_before).wait_for()  # the next page, appended


@pytest.mark.slow
def test_main_page_with_realistic_data(page, seeded_gateway, tmp_path):
    """Renders the overview of 100,000 requests; with MODELPORT_UPDATE_SCREENSHOT=1 it refreshes docs/dashboard.png."""
    sign_in(page, seeded_gateway)
    page.wait_for_selector(".charts figure.chart svg rect.bar")
    assert page.locator(".groups .group").count() == 3
    provider_rows = page.locator(".group", has_text="Providers").locator("tbody tr")
    assert provider_rows.count() == 5
    cards = page.inner_text(".cards").lower()  # card labels are upper-cased by CSS
    assert "unpriced requests" in cards and "% of requests" in cards
    page.mouse.move(0, 0)
    target = SCREENSHOT if os.environ.get("MODELPORT_UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 20_000


def insert_rows(gateway: GatewayProcess, rows: list[tuple[Any, ...]]) -> None:
    placeholders = ", ".join("?" * len(COLUMNS.split(", ")))
    with sqlite3.connect(gateway.data_dir / "modelport.db", timeout=30) as db:
        db.executemany(f"INSERT INTO logs ({COLUMNS}) VALUES ({placeholders})", rows)
    db.close()


def arriving(rng: random.Random, name: str, count: int, created_ms: int) -> list[tuple[Any, ...]]:
    """``count`` records created one millisecond apart from ``created_ms``, as the log writer would add them."""
    rows = []
    for index in range(count):
        row = list(seeded_row(rng, created_ms, index, [("key_live", "live")]))
        row[0], row[2] = f"log_{name}_{index:04d}", created_ms + index
        rows.append(tuple(row))
    return rows


@pytest.mark.slow
def test_live_mode_keeps_a_bounded_window_in_order(page, seeded_gateway):
    rng = random.Random(5)
    sign_in(page, seeded_gateway, "/dashboard/logs")
    table_rows = page.locator("table.logs-table tbody tr[data-id]")
    table_rows.nth(99).wait_for()
    for batch in range(3):
        rows = arriving(rng, f"live{batch}", 150, int(time.time() * 1000))
        insert_rows(seeded_gateway, rows)
        page.locator(f'tr[data-id="{rows[-1][0]}"]').wait_for()
    # A 30-second request is stamped when it started but stored when it ended, behind rows already
    # shown: it still lands in its place.
    insert_rows(seeded_gateway, arriving(rng, "late", 1, rows[0][2] - 30_000))
    page.locator('tr[data-id="log_late_0000"]').wait_for()

    assert table_rows.count() == 500  # 100 + 3 × 150 + 1, trimmed to the window
    assert table_rows.first.get_attribute("data-id") == "log_live2_0149"
    times = page.locator("table.logs-table tbody td.time").evaluate_all("cells => cells.map(c => c.title)")
    assert times == sorted(times, reverse=True)

    page.click("button:has-text('Load more')")  # older rows than the window: browsing stops live mode
    table_rows.nth(500).wait_for()
    assert not page.is_checked("label.switch input")
    ids = table_rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert len(ids) == len(set(ids)) > 500


# -- what the page shows is true -------------------------------------------------------------------
COST, COST_STATUS, COST_REASON, PATH, GATEWAY_EXCEPTION, STATUS = 24, 25, 26, 9, 17, 11  # indexes in COLUMNS


def logged(gateway: GatewayProcess, name: str, changes: list[dict[int, Any]]) -> list[tuple[Any, ...]]:
    """Records stored just now, one per ``changes`` entry (column index → value)."""
    rows = arriving(random.Random(name), name, len(changes), int(time.time() * 1000))
    rows = [tuple(change.get(index, value) for index, value in enumerate(row)) for row, change in zip(rows, changes)]
    insert_rows(gateway, rows)
    return rows


def priced(cost: float | None, status: str = "priced") -> dict[int, Any]:
    return {STATUS: 200, COST: cost, COST_STATUS: status, COST_REASON: f"{status} in a test"}


@pytest.mark.slow
def test_each_provider_shows_where_its_requests_go(page, gateway, fake_openai):
    tag = uuid.uuid4().hex[:6]
    integration = {"name": "hosted", "ai_provider_id": "openai", "slug": f"hosted-{tag}", "key": "sk-hosted-test",
                   "configurations": {"custom_host": "https://llm.example.com/v1"}}
    assert httpx.post(gateway.v1 + "/integrations", headers=gateway.headers(), json=integration).status_code == 200
    provider = {"name": "team", "integration_id": f"hosted-{tag}", "slug": f"team-{tag}"}
    assert httpx.post(gateway.v1 + "/providers", headers=gateway.headers(), json=provider).status_code == 200
    try:
        sign_in(page, gateway, "/dashboard/providers")
        declared = page.locator("section.group[data-kind=provider] tr", has_text="@openai-test")
        declared.wait_for()
        assert fake_openai[0].url + "/v1" in declared.inner_text()  # a provider from the settings file
        via = page.locator("section.group[data-kind=provider] tr", has_text=f"@team-{tag}")
        assert f"https://llm.example.com/v1 (via @hosted-{tag})" in via.inner_text()
    finally:
        httpx.delete(f"{gateway.v1}/providers/team-{tag}", headers=gateway.headers())
        httpx.delete(f"{gateway.v1}/integrations/hosted-{tag}", headers=gateway.headers())


@pytest.mark.slow
def test_costs_read_in_readable_units_with_the_exact_value_on_hover(page, gateway):
    name = "cost" + uuid.uuid4().hex[:6]
    amounts = {6.0e-8: "0.06 µ$", 0.0000042: "4.2 µ$", 0.00042: "0.042¢", 0.0042: "0.42¢", 0.42: "$0.42", 1234.5: "$1,235"}
    rows = logged(gateway, name, [priced(cost) for cost in amounts])
    sign_in(page, gateway, "/dashboard/logs")
    for row, (cost, shown) in zip(rows, amounts.items()):
        cell = page.locator(f'tr[data-id="{row[0]}"] td:nth-child(8) .money')
        cell.wait_for()
        assert cell.inner_text() == shown
        assert float(cell.get_attribute("title").lstrip("$").replace(",", "")) == cost  # exact, no exponent
        assert "e-" not in cell.get_attribute("title")
    cells = page.locator("table.logs-table tbody td:nth-child(8)").all_inner_texts()
    assert not [text for text in cells if re.search(r"e-\d|\.0000", text)]


@pytest.mark.slow
def test_the_priced_note_is_only_on_priced_records(page, gateway):
    name = "note" + uuid.uuid4().hex[:6]
    rows = logged(gateway, name, [priced(0.0021), priced(0.0021, "estimated"), priced(None, "unpriced")])
    sign_in(page, gateway, "/dashboard/logs")
    for row in rows:
        page.goto(f"{gateway.url}/dashboard/logs/{row[0]}")
        section = page.locator("aside.detail section", has_text="Cost and usage")
        section.wait_for()
        says_priced = "published rates" in section.inner_text()
        assert says_priced == (row[COST_STATUS] == "priced"), row[COST_STATUS]


@pytest.mark.slow
def test_log_rows_carry_their_date_and_the_gateway_badge_fits_on_long_paths(page, gateway):
    name = "long" + uuid.uuid4().hex[:6]
    long_path = "/v1/models/" + "a-very-long-owner-name/" * 12 + "predictions"
    (row,) = logged(gateway, name, [{PATH: long_path, GATEWAY_EXCEPTION: 1, STATUS: 502}])
    sign_in(page, gateway, "/dashboard/logs")
    line = page.locator(f'tr[data-id="{row[0]}"]')
    line.wait_for()
    cell, badge = line.locator("td.request").bounding_box(), line.locator(".tag.gateway").bounding_box()
    assert badge["width"] > 0 and cell["x"] <= badge["x"] and badge["x"] + badge["width"] <= cell["x"] + cell["width"]
    today = page.evaluate("new Date().toLocaleDateString('en-US', {month: 'short', day: 'numeric'})")
    assert re.fullmatch(rf"{today} \d\d:\d\d:\d\d", line.locator("td.time").inner_text())


@pytest.mark.slow
def test_chart_labels_stay_inside_their_charts(page, tmp_path):
    with GatewayProcess(tmp_path / "data") as fresh:  # its own logs: the cost axis is set by these amounts alone
        logged(fresh, "axis", [priced(0.00012), priced(0.000042)])
        sign_in(page, fresh)
        page.wait_for_selector(".charts figure.chart svg rect.bar.tone-cost")
        assert_labels_inside(page)
        for range_ in ("7d", "30d", "1h"):  # hours over days, day and minute buckets: each labels its axis its way
            drawn = page.query_selector(".charts svg")
            page.select_option("select[aria-label='Time range']", range_)
            page.wait_for_function("svg => !svg.isConnected", arg=drawn)
            page.wait_for_selector(".charts figure.chart svg rect.bar.tone-cost")
            assert_labels_inside(page)


def assert_labels_inside(page: Any) -> None:
    outside = page.evaluate("""() => [...document.querySelectorAll('.charts svg.chart-svg')].flatMap((svg) => {
        const view = svg.viewBox.baseVal;
        return [...svg.querySelectorAll('text')].map((text) => [text.textContent, text.getBBox()])
          .filter(([, box]) => box.x < view.x || box.y < view.y || box.x + box.width > view.x + view.width
                               || box.y + box.height > view.y + view.height)
          .map(([label]) => label);
    })""")
    assert outside == []
