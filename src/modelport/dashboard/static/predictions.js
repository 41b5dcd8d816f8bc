// Replicate predictions, one row each (GET /v1/logs/predictions): final status, model, predict time and cost,
// and a panel with one prediction's lifecycle as a timeline, so its cost reads as the prediction's own and
// not as the price of the poll that happened to see it end.

import { get } from "./api.js";
import { failure, fill, h } from "./dom.js";
import * as fmt from "./format.js";
import { BASE, navigate } from "./router.js";

const PAGE_SIZE = 100;
const STATUSES = ["starting", "processing", "succeeded", "failed", "canceled"];
const TEXT_FILTERS = [["model", "Model", "owner/name"], ["key_id", "Key", "any key id"], ["slug", "Provider", "slug"]];
const HEAD = ["Created", "Status", "Model", "Predict time", "Cost", "Key", "Ended"];
const NUMERIC = new Set(["Predict time", "Cost"]);

export function predictionStatus(status) {
  return h("span", { class: `pstatus ${STATUSES.includes(status) ? status : "unknown"}` }, status ?? "unknown");
}

/** A prediction's cost: "running" until its end is seen, then the amount with its status, as on log rows. */
function predictionCost(prediction) {
  if (!prediction.ended_at) return h("span", { class: "tag", title: "priced when its end is seen" }, "running");
  return fmt.cost(prediction);
}

const seconds = (value) => (value === null || value === undefined ? "—" : fmt.ms(value * 1000));

function modelLabel(prediction) {
  const title = [prediction.version && `version ${prediction.version}`, prediction.deployment && `deployment ${prediction.deployment}`]
    .filter(Boolean).join(" · ");
  return h("span", { title: title || null }, prediction.model ?? prediction.deployment ?? prediction.version ?? "—");
}

export class PredictionsPage {
  constructor(container) {
    this.search = null;
    this.generation = 0;
    this.cursor = null;
    this.panel = new PredictionPanel(() => navigate(`${BASE}/predictions${location.search}`));
    this.tbody = h("tbody");
    this.error = h("div");
    this.info = h("span", { class: "muted" });
    this.more = h("button", { type: "button", onclick: () => this.load({ append: true }) }, "Load more");
    this.form = this.filterForm();
    fill(container,
      h("header", { class: "page-head" }, h("h1", {}, "Predictions"),
        h("div", { class: "actions" }, h("button", { type: "button", onclick: () => this.load() }, "Refresh"))),
      this.form,
      this.error,
      h("div", { class: "table-wrap" },
        h("table", { class: "grid predictions-table" },
          h("thead", {}, h("tr", {}, HEAD.map((label) => h("th", { class: NUMERIC.has(label) ? "num" : null }, label)))),
          this.tbody)),
      h("footer", { class: "table-foot" }, this.info, this.more),
      this.panel.element);
  }

  filterForm() {
    const status = h("select", { name: "status" }, h("option", { value: "" }, "any"), STATUSES.map((value) => h("option", { value }, value)));
    const form = h("form", { class: "filters", autocomplete: "off" },
      h("label", {}, "Status", status),
      TEXT_FILTERS.map(([name, label, placeholder]) => h("label", {}, label, h("input", { name, placeholder, spellcheck: "false" }))),
      h("span", { class: "filter-buttons" },
        h("button", { type: "submit", class: "primary" }, "Apply"),
        h("button", { type: "button", onclick: () => this.applyFilters(new FormData()) }, "Clear")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.applyFilters(new FormData(form));
    });
    status.addEventListener("change", () => this.applyFilters(new FormData(form)));
    return form;
  }

  applyFilters(data) {
    const params = new URLSearchParams();
    for (const [name, value] of data.entries()) if (String(value).trim()) params.set(name, String(value).trim());
    const search = params.toString() ? `?${params}` : "";
    navigate(`${BASE}/predictions${this.panel.id ? `/${encodeURIComponent(this.panel.id)}` : ""}${search}`, { replace: true });
  }

  /** Called by the router for /predictions and /predictions/<id>. */
  show(route) {
    if (route.search !== this.search) {
      this.search = route.search;
      this.filters = new URLSearchParams(route.search);
      for (const element of this.form.elements) if (element.name) element.value = this.filters.get(element.name) ?? "";
      this.load();
    }
    if (route.id) this.panel.open(route.id).then(() => this.markSelected());
    else this.panel.close();
    this.markSelected();
  }

  async load({ append = false } = {}) {
    const generation = append ? this.generation : ++this.generation;
    const query = { limit: PAGE_SIZE, cursor: append ? this.cursor : undefined };
    for (const name of ["status", ...TEXT_FILTERS.map(([name]) => name)]) query[name] = this.filters.get(name) ?? undefined;
    this.error.replaceChildren();
    this.more.disabled = true;
    try {
      const page = await get("/logs/predictions", query);
      if (generation !== this.generation) return;
      const rows = page.data.map((prediction) => this.rowNode(prediction));
      if (!append) this.tbody.replaceChildren();
      if (!append && !rows.length) rows.push(h("tr", {}, h("td", { class: "empty", colspan: HEAD.length }, "No predictions match these filters yet.")));
      this.tbody.append(...rows);
      this.cursor = page.next_cursor;
      this.markSelected();
    } catch (error) {
      if (generation === this.generation) fill(this.error, failure(error));
    } finally {
      this.more.disabled = false;
      this.more.hidden = !this.cursor;
      const shown = this.tbody.querySelectorAll("tr[data-id]").length;
      this.info.textContent = `${shown.toLocaleString("en-US")} predictions shown${this.cursor ? ", more available" : ""}`;
    }
  }

  rowNode(prediction) {
    const open = () => navigate(`${BASE}/predictions/${encodeURIComponent(prediction.id)}${location.search}`);
    return h("tr", { class: "clickable", tabindex: 0, dataset: { id: prediction.id }, onclick: open,
                     onkeydown: (event) => event.key === "Enter" && open() },
      h("td", { class: "nowrap", title: prediction.created_at }, fmt.stamp(prediction.created_at)),
      h("td", {}, predictionStatus(prediction.status)),
      h("td", { class: "model" }, modelLabel(prediction)),
      h("td", { class: "num" }, seconds(prediction.predict_time)),
      h("td", { class: "num" }, predictionCost(prediction)),
      h("td", { class: "mono muted" }, prediction.key_id ?? "—"),
      h("td", { class: "nowrap", title: prediction.ended_at ?? "" }, prediction.ended_at ? fmt.stamp(prediction.ended_at) : "—"));
  }

  markSelected() {
    for (const node of this.tbody.querySelectorAll("tr.selected")) node.classList.remove("selected");
    if (this.panel.id) this.tbody.querySelector(`tr[data-id="${CSS.escape(this.panel.id)}"]`)?.classList.add("selected");
  }

  destroy() {
    this.generation += 1;
    this.panel.destroy();
  }
}

class PredictionPanel {
  constructor(onClose) {
    this.id = null;
    this.onClose = onClose;
    this.content = h("div", { class: "detail-content" });
    this.element = h("aside", { class: "detail", hidden: true, "aria-label": "Prediction" }, this.content);
    this.onKey = (event) => event.key === "Escape" && this.id && this.onClose();
    document.addEventListener("keydown", this.onKey);
  }

  destroy() {
    this.close();
    document.removeEventListener("keydown", this.onKey);
  }

  async open(id) {
    if (id === this.id && !this.element.hidden) return;
    this.id = id;
    this.element.hidden = false;
    fill(this.content, this.header(null, id), h("p", { class: "muted" }, "Loading…"));
    try {
      const prediction = await get(`/logs/predictions/${encodeURIComponent(id)}`);
      if (this.id === id) fill(this.content, this.render(prediction));
    } catch (error) {
      if (this.id === id) fill(this.content, this.header(null, id), failure(error));
    }
  }

  close() {
    this.id = null;
    this.element.hidden = true;
    this.content.replaceChildren();
  }

  header(prediction, id) {
    return h("header", { class: "detail-head" },
      prediction ? predictionStatus(prediction.status) : null,
      h("h2", {}, id),
      h("button", { type: "button", class: "close", "aria-label": "Close", onclick: () => this.onClose() }, "×"));
  }

  render(prediction) {
    const logs = `${BASE}/logs?${new URLSearchParams({ prediction_id: prediction.id, range: "all" })}`;
    const steps = prediction.lifecycle.length;
    return [
      this.header(prediction, prediction.id),
      section("Summary", facts([
        ["Model", modelLabel(prediction)],
        ["Version", prediction.version ? h("span", { class: "mono" }, prediction.version) : "—"],
        ["Deployment", prediction.deployment ?? "—"],
        ["Provider", fmt.providerLabel(prediction)],
        ["Key", prediction.key_id ? h("span", { class: "mono" }, prediction.key_id) : "—"],
        ["Created", fmt.dateTime(prediction.created_at)],
        ["Ended", prediction.ended_at ? fmt.dateTime(prediction.ended_at) : "not yet seen"],
        ["Predict time", seconds(prediction.predict_time)],
      ])),
      section("Cost", facts([
        ["Cost", predictionCost(prediction)],
        ["Status", prediction.cost_status ?? (prediction.ended_at ? "unpriced" : "not priced until it ends")],
        ["Reason", prediction.cost_reason ?? "—"],
      ]), prediction.usage ? h("pre", { class: "code" }, JSON.stringify(prediction.usage, null, 2)) : null),
      section(`Lifecycle (${steps}${prediction.lifecycle_truncated ? "+" : ""})`,
        lifecycleView(prediction.lifecycle),
        h("p", {}, h("a", { href: logs }, "Every log record of this prediction"))),
    ];
  }
}

function section(title, ...content) {
  return h("section", { class: "detail-section" }, h("h3", {}, title), content);
}

function facts(entries) {
  return h("dl", { class: "facts" }, entries.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** Each log record of the prediction at its moment on one axis, from the create to the last record. */
function lifecycleView(steps) {
  if (!steps.length) return h("p", { class: "muted" }, "No log record of it is stored.");
  const times = steps.map((step) => fmt.epochMs(step.created_at));
  const origin = Math.min(...times);
  const span = Math.max(1, Math.max(...times) - origin);
  return h("ol", { class: "timeline lifecycle" }, steps.map((step, index) => {
    const mark = h("span", { class: `mark ${step.status && step.status < 400 ? "ok" : "failed"}${step.saw_end ? " end" : ""}` });
    mark.style.left = `${((times[index] - origin) / span) * 100}%`;
    return h("li", { class: step.saw_end ? "saw-end" : null, dataset: { step: step.step } },
      h("div", { class: "timeline-label" },
        h("span", { class: "muted offset" }, `+${fmt.ms(times[index] - origin)}`),
        h("span", { class: "tag step" }, step.step),
        fmt.statusBadge(step.status),
        h("a", { href: `${BASE}/logs/${encodeURIComponent(step.log_id)}`, class: "request-line", title: "Open this log record" },
          h("span", { class: "method" }, step.method ?? ""), h("span", { class: "path" }, step.path ?? "")),
        step.saw_status ? h("span", { class: "saw" }, "saw ", predictionStatus(step.saw_status)) : null,
        step.saw_end ? h("span", { class: "tag end-seen", title: "The first record to see the end: the cost was found here" }, "end seen, priced") : null),
      h("div", { class: "track" }, mark),
      step.error ? h("div", { class: "error" }, step.error) : null);
  }));
}
