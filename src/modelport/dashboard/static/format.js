// How numbers, times and money read on screen. Unknown stays visibly unknown ("—", "unpriced"), never 0.

import { h } from "./dom.js";

const DASH = "—";

export function ms(value) {
  if (value === null || value === undefined) return DASH;
  if (value === 0) return "0 ms";
  if (value < 1) return `${value.toFixed(2)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
  return `${(value / 60_000).toFixed(1)} min`;
}

export function count(value) {
  if (value === null || value === undefined) return DASH;
  if (Math.abs(value) < 10_000) return value.toLocaleString("en-US");
  const units = [[1e9, "B"], [1e6, "M"], [1e3, "k"]];
  const [size, unit] = units.find(([size]) => Math.abs(value) >= size);
  return `${(value / size).toFixed(value / size < 100 ? 1 : 0)}${unit}`;
}

const significant = (value, digits = 2) => value.toLocaleString("en-US", { maximumSignificantDigits: digits });

/** Money readable at any size, never in exponent form nor behind a run of zeros: "$1,234", "$12.34",
 *  "$0.42", then cents ("0.42¢") and millionths of a dollar ("0.06 µ$") for per-request prices. */
export function usd(value) {
  if (value === null || value === undefined) return DASH;
  const size = Math.abs(value);
  if (size === 0) return "$0";
  if (size >= 100) return `$${Math.round(value).toLocaleString("en-US")}`;
  if (size >= 0.1) return `$${value.toFixed(2)}`;
  if (size >= 0.01) return `$${significant(value)}`;
  if (size >= 0.0001) return `${significant(value * 100)}¢`;
  return `${significant(value * 1e6)} µ$`;
}

/** The exact amount, for a hover: "$0.00000006". */
export function exactUsd(value) {
  if (value === null || value === undefined) return "";
  return `$${value.toLocaleString("en-US", { maximumFractionDigits: 20 })}`;
}

/** An amount as a node: the readable form, the exact one on hover. */
export function money(value) {
  return h("span", { class: "num money", title: exactUsd(value) || null }, usd(value));
}

export function bytes(value) {
  if (value === null || value === undefined) return DASH;
  if (value < 1024) return `${value} B`;
  if (value < 1024 ** 2) return `${(value / 1024).toFixed(1)} KB`;
  return `${(value / 1024 ** 2).toFixed(1)} MB`;
}

export function percent(ratio) {
  if (ratio === null || ratio === undefined) return DASH;
  return `${(ratio * 100).toFixed(ratio < 0.1 ? 2 : 1)}%`;
}

/** Milliseconds since the epoch from an ISO string, epoch seconds or epoch milliseconds. */
export function epochMs(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value < 1e11 ? value * 1000 : value;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? null : parsed;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "14:03:07.120" today, "Mar 4 14:03:07" on other days (local time). */
export function clock(value) {
  const at = epochMs(value);
  if (at === null) return DASH;
  const date = new Date(at);
  if (date.toDateString() === new Date().toDateString()) return `${time(date)}.${pad(date.getMilliseconds(), 3)}`;
  return `${day(date)} ${time(date)}`;
}

/** "Dec 3 14:03:07", with the year when it is not this one: a log row always says which day it is. */
export function stamp(value) {
  const at = epochMs(value);
  if (at === null) return DASH;
  const date = new Date(at);
  const year = date.getFullYear() === new Date().getFullYear() ? "" : ` ${date.getFullYear()}`;
  return `${day(date)}${year} ${time(date)}`;
}

const time = (date) => `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
const day = (date) => date.toLocaleDateString("en-US", { month: "short", day: "numeric" });

export function dateTime(value) {
  const at = epochMs(value);
  return at === null ? DASH : new Date(at).toLocaleString("en-US", { dateStyle: "medium", timeStyle: "medium" });
}

/** The cost cell: "$0.0012", "$0.0012 estimated", or "unpriced" — cost status is always explicit. */
export function cost(row) {
  if (row.cost_status === "unpriced" || (row.cost_usd === null && row.cost_status !== "priced")) {
    return h("span", { class: "tag unpriced", title: row.cost_reason ?? "cost unknown" }, "unpriced");
  }
  const amount = money(row.cost_usd);
  if (row.cost_status !== "estimated") return amount;
  return h("span", { class: "cost" }, amount, " ", h("span", { class: "tag estimated", title: row.cost_reason ?? "" }, "estimated"));
}

export function statusBadge(status) {
  const kind = !status ? "none" : status < 300 ? "ok" : status < 400 ? "redirect" : status < 500 ? "client" : "server";
  return h("span", { class: `status ${kind}` }, status ? String(status) : "ERR");
}

export function tokens(row) {
  if (row.total_tokens == null && row.input_tokens == null && row.output_tokens == null) return DASH;
  const total = row.total_tokens ?? (row.input_tokens ?? 0) + (row.output_tokens ?? 0);
  return h("span", { class: "num", title: `in ${row.input_tokens ?? DASH} / out ${row.output_tokens ?? DASH}` }, count(total));
}

export function providerLabel(row) {
  if (!row.provider && !row.slug) return DASH;
  return h("span", { class: "provider" }, row.provider ?? "", row.slug ? h("span", { class: "slug" }, ` @${row.slug}`) : null);
}
