// The overview: totals, charts over time and the busiest providers, models and keys, all from
// /v1/analytics/summary (the server aggregates; the page never reads raw rows for this).

import { get } from "./api.js";
import { timeChart } from "./charts.js";
import { failure, fill, h, table } from "./dom.js";
import * as fmt from "./format.js";
import { BASE, navigate } from "./router.js";

const RANGES = {
  "1h": ["Last hour", 3_600_000, "minute"],
  "24h": ["Last 24 hours", 86_400_000, "hour"],
  "7d": ["Last 7 days", 7 * 86_400_000, "hour"],
  "30d": ["Last 30 days", 30 * 86_400_000, "day"],
};
const BUCKET_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const REFRESH_MS = 30_000;
const GROUPS = [
  ["provider", "Providers", "provider"],
  ["key", "Keys", "key_id"],
  ["model", "Models", "model"],
];

export class OverviewPage {
  constructor(container) {
    this.range = null;
    this.generation = 0;
    this.timer = null;
    this.select = h("select", { "aria-label": "Time range", onchange: (event) => this.pick(event.target.value) },
      Object.entries(RANGES).map(([value, [label]]) => h("option", { value }, label)));
    this.updated = h("span", { class: "muted" });
    this.cards = h("div", { class: "cards" });
    this.charts = h("div", { class: "charts" });
    this.groups = h("div", { class: "groups" });
    this.error = h("div");
    fill(container,
      h("header", { class: "page-head" }, h("h1", {}, "Overview"), h("div", { class: "actions" }, this.updated, this.select)),
      this.error, this.cards, this.charts, this.groups);
    this.onVisible = () => !document.hidden && this.load();
    document.addEventListener("visibilitychange", this.onVisible);
  }

  pick(range) {
    navigate(`${BASE}/${range === "24h" ? "" : `?range=${range}`}`, { replace: true });
  }

  show(route) {
    const range = new URLSearchParams(route.search).get("range");
    const next = RANGES[range] ? range : "24h";
    if (next === this.range) return;
    this.range = next;
    this.select.value = next;
    this.load();
  }

  async load() {
    clearTimeout(this.timer);
    const generation = ++this.generation;
    const [, span, bucket] = RANGES[this.range];
    const until = Date.now();
    const since = until - span;
    try {
      const [keys, ...answers] = await Promise.all([
        get("/api-keys", { page_size: 1000 }).catch(() => ({ data: [] })), // names for the key group only
        ...GROUPS.map(([groupBy]) => get("/analytics/summary", { since, until, bucket, group_by: groupBy })),
      ]);
      if (generation !== this.generation) return;
      const [first] = answers;
      const names = new Map(keys.data.map((key) => [key.id, key.name]));
      this.error.replaceChildren();
      fill(this.cards, cards(first.totals));
      fill(this.charts, charts(first.series, since, until, BUCKET_MS[bucket]));
      fill(this.groups, GROUPS.map(([, title, filter], index) =>
        groupTable(title, filter, answers[index].groups, this.range, filter === "key_id" ? names : new Map())));
      this.updated.textContent = `Updated ${new Date(until).toLocaleTimeString("en-US")}`;
    } catch (error) {
      if (generation === this.generation) fill(this.error, failure(error));
    }
    if (generation === this.generation && !document.hidden) this.timer = setTimeout(() => this.load(), REFRESH_MS);
  }

  destroy() {
    this.generation += 1;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisible);
  }
}

function cards(totals) {
  const card = (label, value, note, tone) =>
    h("div", { class: `card ${tone ?? ""}` }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value),
      h("div", { class: "card-note" }, note));
  return [
    card("Requests", fmt.count(totals.requests), "through the gateway"),
    card("Errors", fmt.count(totals.errors), `${fmt.percent(totals.error_rate)} of requests`, totals.errors ? "bad" : null),
    card("Latency p50", fmt.ms(totals.p50_ms), `p95 ${fmt.ms(totals.p95_ms)} · p99 ${fmt.ms(totals.p99_ms)}`),
    card("Cost", fmt.money(totals.cost_usd ?? 0),
      totals.unpriced_requests ? `+ ${fmt.count(totals.unpriced_requests)} unpriced requests (not included)` : "every request priced",
      totals.unpriced_requests ? "warn" : null),
    card("Tokens", fmt.count((totals.input_tokens ?? 0) + (totals.output_tokens ?? 0)),
      `${fmt.count(totals.input_tokens)} in · ${fmt.count(totals.output_tokens)} out`),
  ];
}

/** Buckets with no requests are absent from the answer; fill them so the time axis is even. */
function evenSeries(series, since, until, size) {
  const byTime = new Map(series.map((point) => [fmt.epochMs(point.t), point]));
  const times = [];
  for (let t = Math.floor(since / size) * size; t <= until; t += size) times.push(t);
  const points = times.map((t) => byTime.get(t) ?? null);
  return { times, points };
}

function charts(series, since, until, size) {
  const { times, points } = evenSeries(series, since, until, size);
  const pick = (field, empty = 0) => points.map((point) => point?.[field] ?? (point ? null : empty));
  const requests = pick("requests");
  const errors = pick("errors");
  return [
    timeChart({ title: "Requests", times, bucketMs: size, integer: true, format: fmt.count, series: [
      { name: "OK", kind: "bar", tone: "ok", values: requests.map((total, i) => total - (errors[i] ?? 0)) },
      { name: "Errors", kind: "bar", tone: "err", values: errors },
    ] }),
    timeChart({ title: "Latency", times, bucketMs: size, format: fmt.ms, series: [
      { name: "p50", kind: "line", tone: "p50", values: pick("p50_ms", null) },
      { name: "p95", kind: "line", tone: "p95", values: pick("p95_ms", null) },
    ] }),
    timeChart({ title: "Cost (priced requests)", times, bucketMs: size, format: fmt.usd, series: [
      { name: "USD", kind: "bar", tone: "cost", values: pick("cost_usd") },
    ] }),
    timeChart({ title: "Tokens", times, bucketMs: size, integer: true, format: fmt.count, series: [
      { name: "Tokens", kind: "bar", tone: "tokens", values: pick("tokens") },
    ] }),
  ];
}

function groupTable(title, filter, groups, range, names) {
  const rows = [...(groups ?? [])].sort((a, b) => b.requests - a.requests);
  const open = (group) => group.key && navigate(`${BASE}/logs?${new URLSearchParams({ [filter]: group.key, range })}`);
  return h("section", { class: `group group-${filter}` }, h("h2", {}, title), table([
    { label: title.replace(/s$/, ""), cell: (g) => g.key ? h("span", { class: "group-key", title: g.key }, names.get(g.key) ?? g.key) : h("span", { class: "muted" }, "(none)") },
    { label: "Requests", class: "num", cell: (g) => fmt.count(g.requests) },
    { label: "Errors", class: "num", cell: (g) => g.errors ? h("span", { class: "bad" }, `${fmt.count(g.errors)} (${fmt.percent(g.errors / g.requests)})`) : "0" },
    { label: "p50", class: "num", cell: (g) => fmt.ms(g.p50_ms) },
    { label: "Tokens", class: "num", cell: (g) => fmt.count(g.tokens) },
    { label: "Cost", class: "num", cell: (g) => fmt.money(g.cost_usd) },
  ], rows, { empty: "No requests in this range.", onRow: open }));
}
