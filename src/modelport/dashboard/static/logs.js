// The logs page: filters, a table of the newest records that stays live, cursor paging, and the detail panel.
// The server filters and pages (it may hold millions of rows); the page holds at most MAX_ROWS of them.

import { download, get } from "./api.js";
import { DetailPanel } from "./detail.js";
import { failure, fill, h } from "./dom.js";
import * as fmt from "./format.js";
import { BASE, navigate } from "./router.js";

const PAGE_SIZE = 100;
const POLL_LIMIT = 200;
const MAX_ROWS = 500;
const POLL_MS = 2000;
// A record is stamped when its request starts but stored when it ends (and the writer batches), so a long
// request lands after newer ones are shown. Each poll re-reads this far back, up to MAX_ROWS rows, and
// skips ids it has: a late record older than that many rows would fall outside the window anyway.
const LOOK_BACK_MS = 60_000;

const RANGES = {
  "15m": ["Last 15 minutes", 15 * 60_000],
  "1h": ["Last hour", 3_600_000],
  "24h": ["Last 24 hours", 86_400_000],
  "7d": ["Last 7 days", 7 * 86_400_000],
  "30d": ["Last 30 days", 30 * 86_400_000],
  all: ["All time", null],
  custom: ["Custom range", null],
};

// Filters without an input of their own: links set them (a record's prediction id, a group row) and they
// show as removable chips.
const LINKED_FILTERS = ["slug", "endpoint", "prediction_id"];

const TEXT_FILTERS = [
  ["provider", "Provider", "any"],
  ["model", "Model", "any"],
  ["key_id", "Key", "any key id"],
  ["trace_id", "Trace ID", "any"],
  ["metadata", "Metadata", "key=value, …"],
  ["q", "Search", "in path or error"],
];

/** The /v1/logs query for the filters in the page URL (range presets are resolved against now). */
function logQuery(filters, now = Date.now()) {
  const query = {};
  for (const name of ["provider", "model", "key_id", "trace_id", "q", ...LINKED_FILTERS]) {
    query[name] = filters.get(name)?.trim();
  }
  query.status = filters.get("errors") ? "error" : filters.get("status")?.trim();
  for (const pair of (filters.get("metadata") ?? "").split(",")) {
    const [name, ...value] = pair.split("=");
    if (name.trim() && value.length) query[`metadata.${name.trim()}`] = value.join("=").trim();
  }
  const range = filters.get("range") ?? "24h";
  if (range === "custom") {
    query.since = fmt.epochMs(filters.get("from") || null) ?? undefined;
    query.until = fmt.epochMs(filters.get("to") || null) ?? undefined;
  } else if (RANGES[range]?.[1]) {
    query.since = now - RANGES[range][1];
  }
  return query;
}

const byNewest = (a, b) => fmt.epochMs(b.created_at) - fmt.epochMs(a.created_at) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

export class LogsPage {
  constructor(container) {
    this.rows = [];
    this.ids = new Set();
    this.cursor = null;
    this.cursorStale = false; // rows were trimmed off the bottom: the cursor no longer follows the last row
    this.live = true;
    this.search = null;
    this.generation = 0;
    this.timer = null;
    this.detail = new DetailPanel(() => navigate(`${BASE}/logs${location.search}`));
    this.build(container);
    this.onVisible = () => !document.hidden && this.live && this.schedule(0);
    document.addEventListener("visibilitychange", this.onVisible);
  }

  build(container) {
    this.tbody = h("tbody");
    this.info = h("span", { class: "muted" });
    this.more = h("button", { type: "button", onclick: () => this.loadMore() }, "Load more");
    this.liveToggle = h("input", { type: "checkbox", checked: true, onchange: (e) => this.setLive(e.target.checked) });
    this.form = this.filterForm();
    this.error = h("div");
    const head = ["Time", "Status", "Provider", "Model", "Request", "Latency", "Tokens", "Cost", "Trace ID"];
    const numeric = new Set(["Latency", "Tokens", "Cost"]);
    fill(container,
      h("header", { class: "page-head" },
        h("h1", {}, "Logs"),
        h("div", { class: "actions" },
          h("label", { class: "switch" }, this.liveToggle, h("span", {}, "Live")),
          h("button", { type: "button", onclick: () => this.export("jsonl") }, "Export JSONL"),
          h("button", { type: "button", onclick: () => this.export("csv") }, "Export CSV"))),
      this.form,
      this.error,
      h("div", { class: "table-wrap" },
        h("table", { class: "grid logs-table" },
          h("thead", {}, h("tr", {}, head.map((label) => h("th", { class: numeric.has(label) ? "num" : null }, label)))),
          this.tbody)),
      h("footer", { class: "table-foot" }, this.info, this.more),
      this.detail.element);
  }

  filterForm() {
    const inputs = TEXT_FILTERS.map(([name, label, placeholder]) =>
      h("label", {}, label, h("input", { name, placeholder, list: `${name}-options`, autocomplete: "off", spellcheck: "false" })));
    this.options = Object.fromEntries(["provider", "model", "key_id"].map((name) => [name, h("datalist", { id: `${name}-options` })]));
    const range = h("select", { name: "range" }, Object.entries(RANGES).map(([value, [label]]) => h("option", { value }, label)));
    this.custom = h("span", { class: "custom-range", hidden: true },
      h("label", {}, "From", h("input", { name: "from", type: "datetime-local", step: 1 })),
      h("label", {}, "To", h("input", { name: "to", type: "datetime-local", step: 1 })));
    const form = h("form", { class: "filters", autocomplete: "off" },
      inputs,
      h("label", {}, "Status", h("input", { name: "status", placeholder: "any", inputmode: "numeric", size: 4 })),
      h("label", { class: "check" }, h("input", { name: "errors", type: "checkbox", value: "1" }), "Errors only"),
      h("label", {}, "Time", range),
      this.custom,
      h("span", { class: "filter-buttons" },
        h("button", { type: "submit", class: "primary" }, "Apply"),
        h("button", { type: "button", onclick: () => this.applyFilters(new URLSearchParams(), { keepLinked: false }) }, "Clear")),
      this.linked = h("span", { class: "linked" }),
      Object.values(this.options));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.applyFilters(new FormData(form));
    });
    form.addEventListener("change", (event) => {
      if (event.target.tagName === "SELECT" || event.target.type === "checkbox") this.applyFilters(new FormData(form));
    });
    return form;
  }

  applyFilters(data, { keepLinked = true } = {}) {
    const params = new URLSearchParams();
    if (keepLinked) for (const name of LINKED_FILTERS) if (this.filters.get(name)) params.set(name, this.filters.get(name));
    for (const [name, value] of data.entries()) if (String(value).trim()) params.set(name, String(value).trim());
    if (params.get("range") !== "custom") ["from", "to"].forEach((name) => params.delete(name));
    if (params.get("range") === "24h") params.delete("range"); // the default needs no URL noise
    const search = params.toString() ? `?${params}` : "";
    navigate(`${BASE}/logs${this.detail.id ? `/${encodeURIComponent(this.detail.id)}` : ""}${search}`, { replace: true });
  }

  /** Called by the router for /logs and /logs/<id>. */
  show(route) {
    if (route.search !== this.search) {
      this.search = route.search;
      this.filters = new URLSearchParams(route.search);
      this.syncForm();
      this.reload();
    }
    if (route.id) this.detail.open(route.id).then(() => this.markSelected());
    else this.detail.close();
    this.markSelected();
  }

  syncForm() {
    for (const element of this.form.elements) {
      if (!element.name) continue;
      const value = this.filters.get(element.name);
      if (element.type === "checkbox") element.checked = Boolean(value);
      else element.value = value ?? (element.name === "range" ? "24h" : "");
    }
    this.custom.hidden = this.filters.get("range") !== "custom";
    fill(this.linked, LINKED_FILTERS.filter((name) => this.filters.get(name)).map((name) =>
      h("span", { class: "chip" }, `${name}: ${this.filters.get(name)}`,
        h("button", { type: "button", "aria-label": `Remove ${name} filter`, onclick: () => this.dropFilter(name) }, "×"))));
  }

  dropFilter(name) {
    const params = new URLSearchParams(this.filters);
    params.delete(name);
    this.filters = params;
    this.applyFilters(new FormData(this.form));
  }

  async reload() {
    const generation = ++this.generation;
    this.error.replaceChildren();
    this.tbody.classList.add("loading");
    try {
      const page = await get("/logs", { ...logQuery(this.filters), limit: PAGE_SIZE });
      if (generation !== this.generation) return;
      this.replaceRows(page.data, page.next_cursor);
    } catch (error) {
      if (generation === this.generation) fill(this.error, failure(error));
    } finally {
      if (generation === this.generation) {
        this.tbody.classList.remove("loading");
        this.schedule();
      }
    }
  }

  replaceRows(rows, cursor) {
    this.rows = [...rows];
    this.ids = new Set(rows.map((row) => row.id));
    this.cursor = cursor;
    this.cursorStale = false;
    const fragment = document.createDocumentFragment();
    for (const row of rows) fragment.append(this.rowNode(row));
    if (!rows.length) fragment.append(h("tr", { class: "empty-row" }, h("td", { class: "empty", colspan: 9 }, "No requests match these filters yet.")));
    this.tbody.replaceChildren(fragment);
    this.markSelected();
    this.suggest();
    this.footer();
  }

  async loadMore() {
    if (!this.cursor && !this.cursorStale) return;
    this.setLive(false); // browsing older rows: stop the live window from trimming them away
    const generation = this.generation;
    const query = { ...logQuery(this.filters), limit: PAGE_SIZE };
    // until is exclusive: +1 ms keeps rows that share the oldest shown row's millisecond (ids dedupe them).
    if (this.cursorStale) query.until = fmt.epochMs(this.rows.at(-1).created_at) + 1;
    else query.cursor = this.cursor;
    this.more.disabled = true;
    try {
      const page = await get("/logs", query);
      if (generation !== this.generation) return;
      const fragment = document.createDocumentFragment();
      for (const row of page.data.filter((row) => !this.ids.has(row.id))) {
        this.rows.push(row);
        this.ids.add(row.id);
        fragment.append(this.rowNode(row));
      }
      this.tbody.append(fragment);
      this.cursor = page.next_cursor;
      this.cursorStale = false;
      this.suggest();
    } catch (error) {
      fill(this.error, failure(error));
    } finally {
      this.more.disabled = false;
      this.footer();
    }
  }

  setLive(on) {
    const was = this.live;
    this.live = on;
    this.liveToggle.checked = on;
    if (on && !was) this.reload(); // back to the newest rows
    this.footer();
  }

  schedule(delay = POLL_MS) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.poll(), delay);
  }

  async poll() {
    const query = logQuery(this.filters);
    if (!this.live || document.hidden || query.until !== undefined) return this.schedule();
    const generation = this.generation;
    const newest = this.rows.length ? fmt.epochMs(this.rows[0].created_at) : null;
    if (newest !== null) query.since = Math.max(query.since ?? 0, newest - LOOK_BACK_MS);
    try {
      const rows = [];
      let cursor = null;
      do {
        const page = await get("/logs", { ...query, cursor, limit: Math.min(POLL_LIMIT, MAX_ROWS - rows.length) });
        if (generation !== this.generation) return;
        rows.push(...page.data);
        cursor = page.next_cursor;
      } while (cursor && rows.length < MAX_ROWS);
      this.error.replaceChildren(); // a poll that works again clears the last failure
      if (this.live) this.merge(rows, cursor, newest);
    } catch (error) {
      if (generation === this.generation) fill(this.error, failure(error));
    }
    if (generation === this.generation) this.schedule();
  }

  merge(rows, cursor, newest) {
    const fresh = rows.filter((row) => !this.ids.has(row.id));
    if (!fresh.length) return;
    // More arrived than the window holds: the rows between are not shown, so start over from these.
    if (cursor && (newest === null || fmt.epochMs(rows.at(-1).created_at) > newest)) return this.replaceRows(rows, cursor);
    if (!this.rows.length) this.tbody.replaceChildren();
    for (const row of fresh.sort(byNewest).reverse()) {
      let index = 0;
      while (index < this.rows.length && byNewest(this.rows[index], row) < 0) index += 1;
      const node = this.rowNode(row);
      node.classList.add("fresh");
      this.tbody.insertBefore(node, this.tbody.children[index] ?? null);
      this.rows.splice(index, 0, row);
      this.ids.add(row.id);
    }
    while (this.rows.length > MAX_ROWS) {
      this.ids.delete(this.rows.pop().id);
      this.tbody.lastElementChild.remove();
      this.cursorStale = true;
    }
    this.markSelected();
    this.suggest();
    this.footer();
  }

  rowNode(row) {
    const open = () => navigate(`${BASE}/logs/${encodeURIComponent(row.id)}${location.search}`);
    const tags = [
      row.stream ? h("span", { class: "tag" }, "stream") : null,
      row.cache_status === "HIT" ? h("span", { class: "tag" }, "cache hit") : null,
      row.retry_count ? h("span", { class: "tag", title: "retries" }, `retry ×${row.retry_count}`) : null,
      row.gateway_exception ? h("span", { class: "tag gateway", title: "error raised by the gateway itself" }, "gateway") : null,
    ];
    return h("tr", { class: "clickable", tabindex: 0, dataset: { id: row.id }, onclick: open,
                     onkeydown: (event) => event.key === "Enter" && open() },
      h("td", { class: "time", title: row.created_at }, fmt.stamp(row.created_at)),
      h("td", {}, fmt.statusBadge(row.status)),
      h("td", { title: [row.provider, row.slug && `@${row.slug}`].filter(Boolean).join(" ") }, fmt.providerLabel(row)),
      h("td", { class: "model", title: row.model ?? "" }, row.model ?? "—"),
      // The path gives way (ellipsis) so the tags after it, the gateway-error badge first, stay in view.
      h("td", { class: "request", title: row.error ?? row.path }, h("div", { class: "request-line" },
        h("span", { class: "method" }, row.method), h("span", { class: "path" }, row.path), tags.reverse())),
      h("td", { class: "num", title: `upstream ${fmt.ms(row.upstream_latency_ms)}` }, fmt.ms(row.latency_ms)),
      h("td", { class: "num" }, fmt.tokens(row)),
      h("td", { class: "num" }, fmt.cost(row)),
      h("td", { class: "trace mono", title: row.trace_id ?? "" }, row.trace_id ?? "—"));
  }

  markSelected() {
    for (const node of this.tbody.querySelectorAll("tr.selected")) node.classList.remove("selected");
    if (this.detail.id) this.tbody.querySelector(`tr[data-id="${CSS.escape(this.detail.id)}"]`)?.classList.add("selected");
  }

  /** Suggestions for the text filters, from the rows on screen: no extra query over the whole table. */
  suggest() {
    for (const [name, field] of [["provider", "provider"], ["model", "model"], ["key_id", "key_id"]]) {
      const values = [...new Set(this.rows.map((row) => row[field]).filter(Boolean))].sort();
      fill(this.options[name], values.map((value) => h("option", { value })));
    }
  }

  footer() {
    const more = this.cursor || this.cursorStale;
    this.more.hidden = !more;
    const live = this.live ? (logQuery(this.filters).until !== undefined ? " · live off (range has an end)" : " · live") : "";
    this.info.textContent = `${this.rows.length.toLocaleString("en-US")} rows shown${more ? ", more available" : ""}${live}`;
  }

  export(format) {
    download("/logs/export", { ...logQuery(this.filters), format }, `modelport-logs.${format}`)
      .catch((error) => fill(this.error, failure(error)));
  }

  destroy() {
    this.generation += 1;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisible);
    this.detail.destroy();
  }
}
