// One log record in full: summary, cost and usage, attempts as a timeline, request and response.

import { get } from "./api.js";
import { failure, fill, h } from "./dom.js";
import * as fmt from "./format.js";
import { BASE } from "./router.js";

// Highlighting is per character of text; past this a body is shown plain until asked (a 1 MB body would
// otherwise stall the page).
const HIGHLIGHT_LIMIT = 200_000;

export class DetailPanel {
  constructor(onClose) {
    this.id = null;
    this.onClose = onClose;
    this.content = h("div", { class: "detail-content" });
    this.element = h("aside", { class: "detail", hidden: true, "aria-label": "Log record" }, this.content);
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
      const record = await get(`/logs/${encodeURIComponent(id)}`);
      if (this.id === id) fill(this.content, this.render(record));
    } catch (error) {
      if (this.id === id) fill(this.content, this.header(null, id), failure(error));
    }
  }

  close() {
    this.id = null;
    this.element.hidden = true;
    this.content.replaceChildren();
  }

  header(record, id) {
    return h("header", { class: "detail-head" },
      record ? fmt.statusBadge(record.status) : null,
      h("h2", {}, record ? h("span", {}, h("span", { class: "method" }, record.method), " ", record.path) : id),
      h("button", { type: "button", class: "close", "aria-label": "Close", onclick: () => this.onClose() }, "×"));
  }

  render(record) {
    return [
      this.header(record, record.id),
      record.error ? h("div", { class: "notice error" }, record.error) : null,
      section("Summary", summary(record)),
      section("Cost and usage", costView(record)),
      section(`Attempts (${record.attempts?.length ?? 0})`, attemptsView(record.attempts ?? [])),
      section("Request", headersView(record.request_headers),
        bodyView(record.request_body, record.request_body_encoding, record.request_content_type, record.request_bytes)),
      section("Response", headersView(record.response_headers),
        bodyView(record.response_body, record.response_body_encoding, record.response_content_type, record.response_bytes)),
      section("Metadata", jsonBlock(record.metadata ?? {})),
      record.feedback?.length ? section("Feedback", feedbackView(record.feedback)) : null,
    ];
  }
}

function section(title, ...content) {
  return h("section", { class: "detail-section" }, h("h3", {}, title), content);
}

function filterLink(name, value) {
  if (!value) return "—";
  const href = `${BASE}/logs?${new URLSearchParams({ [name]: value, range: "all" })}`;
  return h("a", { href, class: "mono", title: `Show every record with this ${name}` }, value);
}

/** A record of a prediction links to the prediction (its cost and lifecycle) and to its other records. */
function predictionLinks(predictionId) {
  if (!predictionId) return "—";
  return h("span", {},
    h("a", { href: `${BASE}/predictions/${encodeURIComponent(predictionId)}`, class: "mono prediction-link",
             title: "The prediction: its status, cost and lifecycle" }, predictionId),
    " · ", h("a", { href: `${BASE}/logs?${new URLSearchParams({ prediction_id: predictionId, range: "all" })}` }, "its records"));
}

function summary(record) {
  const entries = [
    ["Log ID", h("span", { class: "mono" }, record.id)],
    ["Trace ID", filterLink("trace_id", record.trace_id)],
    ["Time", fmt.dateTime(record.created_at)],
    ["Provider", fmt.providerLabel(record)],
    ["Model", record.model ?? "—"],
    ["Endpoint", record.endpoint ?? "—"],
    ["Key", record.key_id ? h("span", {}, record.key_name ?? "", " ", h("span", { class: "mono muted" }, record.key_id)) : "—"],
    ["Latency", `${fmt.ms(record.latency_ms)} total · ${fmt.ms(record.upstream_latency_ms)} upstream`],
    ["Size", `${fmt.bytes(record.request_bytes)} in · ${fmt.bytes(record.response_bytes)} out`],
    ["Cache", record.cache_status ?? "—"],
    ["Retries", String(record.retry_count ?? 0)],
    ["Target used", record.last_used_index ?? "—"],
    ["Prediction", predictionLinks(record.prediction_id)],
    ["Stream", record.stream ? "yes" : "no"],
    ["Gateway error", record.gateway_exception ? "yes: raised by the gateway, not the provider" : "no"],
  ];
  return h("dl", { class: "facts" }, entries.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function costView(record) {
  const status = record.cost_status ?? "unpriced";
  const explain = {
    priced: "Priced from the provider's published rates.",
    estimated: "Estimated: part of the price was assumed (for example a default hardware).",
    unpriced: "Unpriced: the cost of this request is not known. It is left out of totals, not counted as $0.",
  }[status];
  return [
    h("dl", { class: "facts" },
      h("dt", {}, "Cost"), h("dd", {}, fmt.cost(record)),
      h("dt", {}, "Status"), h("dd", {}, status),
      h("dt", {}, "Reason"), h("dd", {}, record.cost_reason ?? "—"),
      h("dt", {}, "Tokens"), h("dd", {}, `${fmt.count(record.input_tokens)} in · ${fmt.count(record.output_tokens)} out · ${fmt.count(record.total_tokens)} total`)),
    h("p", { class: "muted" }, explain),
    record.usage ? jsonBlock(record.usage) : null,
  ];
}

/** Each upstream try as a bar on one time axis: retries and fallbacks read left to right. */
function attemptsView(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, "No upstream call was made (answered or refused by the gateway).");
  const spans = attempts.map((attempt) => {
    const start = fmt.epochMs(attempt.started_at) ?? 0;
    return { attempt, start, end: start + (attempt.latency_ms ?? 0) };
  });
  const origin = Math.min(...spans.map((span) => span.start));
  const total = Math.max(1, ...spans.map((span) => span.end - origin));
  return h("ol", { class: "timeline" }, spans.map(({ attempt, start, end }) => {
    const bar = h("span", { class: `bar ${attempt.status && attempt.status < 400 ? "ok" : "failed"}` });
    bar.style.left = `${((start - origin) / total) * 100}%`;
    bar.style.width = `${Math.max(((end - start) / total) * 100, 0.8)}%`;
    return h("li", {},
      h("div", { class: "timeline-label" },
        fmt.statusBadge(attempt.status),
        h("span", { class: "mono" }, attempt.index ?? ""),
        fmt.providerLabel(attempt),
        attempt.retry ? h("span", { class: "tag" }, `retry ${attempt.retry}`) : null,
        h("span", { class: "muted" }, `+${fmt.ms(start - origin)} · ${fmt.ms(attempt.latency_ms)}`)),
      h("div", { class: "track" }, bar),
      attempt.error ? h("div", { class: "error" }, attempt.error) : null);
  }));
}

function headersView(headers) {
  const entries = Object.entries(headers ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return h("p", { class: "muted" }, "No headers recorded.");
  return h("details", { class: "headers" },
    h("summary", {}, `Headers (${entries.length})`),
    h("table", { class: "kv" }, h("tbody", {}, entries.map(([name, value]) =>
      h("tr", {}, h("th", {}, name), h("td", { class: "mono" }, Array.isArray(value) ? value.join(", ") : String(value)))))));
}

function bodyView(body, encoding, contentType, totalBytes) {
  if (body === null || body === undefined || body === "") {
    return h("p", { class: "muted" }, totalBytes ? `Body not stored (${fmt.bytes(totalBytes)}).` : "No body.");
  }
  const stored = encoding === "base64" ? Math.floor((body.length * 3) / 4) - (body.match(/=+$/)?.[0].length ?? 0)
                                       : new TextEncoder().encode(body).length;
  const note = totalBytes > stored ? h("p", { class: "muted" }, `First ${fmt.bytes(stored)} of ${fmt.bytes(totalBytes)} stored.`) : null;
  if (encoding === "base64") {
    return [h("p", { class: "muted" }, `Binary body (${contentType ?? "unknown type"}), shown as base64.`), note,
            h("pre", { class: "code" }, body.slice(0, 4096) + (body.length > 4096 ? "…" : ""))];
  }
  return [note, textBlock(body)];
}

function textBlock(text) {
  const parsed = parseJson(text);
  if (parsed !== undefined) return jsonBlock(parsed);
  return h("pre", { class: "code" }, text);
}

function parseJson(text) {
  const start = text.trimStart()[0];
  if (start !== "{" && start !== "[") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // truncated or not JSON: shown as stored
  }
}

function jsonBlock(value) {
  const text = JSON.stringify(value, null, 2);
  const pre = h("pre", { class: "code json" });
  if (text.length > HIGHLIGHT_LIMIT) pre.textContent = text;
  else highlight(pre, text);
  return pre;
}

const TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

function highlight(pre, text) {
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    if (match.index > last) pre.append(text.slice(last, match.index));
    const kind = match[1] ? (match[2] ? "key" : "string") : /^[tfn]/.test(match[0]) ? "literal" : "number";
    pre.append(h("span", { class: `j-${kind}` }, match[1] ?? match[0]));
    if (match[2]) pre.append(match[2]);
    last = match.index + match[0].length;
  }
  pre.append(text.slice(last));
}

function feedbackView(items) {
  return h("table", { class: "kv" }, h("tbody", {}, items.map((item) =>
    h("tr", {}, h("th", {}, fmt.dateTime(item.created_at)),
      h("td", {}, `value ${item.value} · weight ${item.weight ?? 1}`, item.metadata && Object.keys(item.metadata).length ? jsonBlock(item.metadata) : null)))));
}
