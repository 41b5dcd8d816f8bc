// Where a key's or provider's limits stand: one bar per rate-limit rule and one for its budget, as the
// control plane reports them in each list item's `usage` (docs/limits.md, "What operators see").

import { h } from "./dom.js";
import * as fmt from "./format.js";

const WINDOWS = { rpm: "per minute", rph: "per hour", rpd: "per day", rpw: "per week" };

function bar({ label, used, limit, shown, until, alerted, title }) {
  const ratio = limit > 0 ? Math.min(1, used / limit) : 0;
  const fill = h("span", { class: "usage-fill" });
  fill.style.width = `${(ratio * 100).toFixed(1)}%`; // CSSOM, not a style attribute: the CSP forbids inline styles
  const level = ratio >= 1 ? "full" : ratio >= 0.8 ? "high" : "";
  return h("div", { class: `usage-bar ${level} ${alerted ? "alerted" : ""}`, title },
    h("div", { class: "usage-label" }, h("span", {}, label), h("span", { class: "num" }, shown)),
    h("div", { class: "usage-track" }, fill),
    h("div", { class: "usage-note muted" }, until, alerted ? h("span", { class: "tag alert" }, "alert threshold reached") : null));
}

function rateBar(rule) {
  const unit = rule.type === "tokens" ? "tokens" : "requests";
  return bar({
    label: `${unit} ${WINDOWS[rule.unit] ?? rule.unit}`,
    used: rule.used, limit: rule.value,
    shown: `${fmt.count(rule.used)} / ${fmt.count(rule.value)}`,
    until: `resets ${fmt.stamp(rule.resets_at)}`,
    title: `${rule.used} of ${rule.value} ${unit} used, ${rule.remaining} left; the window resets at ${fmt.dateTime(rule.resets_at)}`,
  });
}

function budgetBar(budget) {
  const money = budget.type === "cost";
  const amount = (value) => (money ? fmt.usd(value) : `${fmt.count(value)} tokens`);
  const exact = (value) => (money ? fmt.exactUsd(value) : `${value.toLocaleString("en-US")} tokens`);
  const period = budget.periodic_reset ?? (budget.periodic_reset_days ? `every ${budget.periodic_reset_days} days` : "for good");
  return bar({
    label: `budget (${money ? "USD" : "tokens"}, ${period})`,
    used: budget.used, limit: budget.credit_limit, alerted: budget.alerted,
    shown: `${amount(budget.used)} / ${amount(budget.credit_limit)}`,
    until: budget.period_ends_at ? `period ends ${fmt.dateTime(budget.period_ends_at)}` : "no reset",
    title: `${exact(budget.used)} of ${exact(budget.credit_limit)} used (requests in flight included), ${exact(budget.remaining)} left`,
  });
}

/** The usage cell of a key's or provider's row; "—" when no limit applies. */
export function usageBars(usage) {
  const bars = [...(usage?.rate_limits ?? []).map(rateBar), usage?.budget ? budgetBar(usage.budget) : null].filter(Boolean);
  return bars.length ? h("div", { class: "usage" }, bars) : "—";
}
