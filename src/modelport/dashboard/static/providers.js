// Stored providers: Portkey's virtual keys, integrations and providers (one store table, three APIs).
// Secrets are write-only: the API never sends one back, so the masked hint is all there is to show, and
// an edit that leaves the secret blank keeps the stored one.

import { get, send } from "./api.js";
import { failure, fill, h, table } from "./dom.js";
import { confirmAction, formDialog, limitFields, rowActions, runAction } from "./forms.js";
import * as fmt from "./format.js";
import { usageBars } from "./usage.js";

const PAGE_SIZE = 1000; // admin lists are small; the control plane's largest page

// Field names as the control plane answers them (Portkey's, which differ per kind).
const providerId = (p) => p.ai_provider_name ?? p.ai_provider_id ?? p.provider ?? "—";
const hint = (p) => p.masked_api_key ?? p.masked_key ?? null;
const ownHost = (p) => p.model_config?.customHost ?? p.configurations?.custom_host ?? p.custom_host ?? null;
/** Where a record's requests really go: its own host, else its integration's, else the provider's API. */
function customHost(p, integrations) {
  const own = ownHost(p);
  if (own) return own;
  if (!p.integration_id) return "provider default";
  const integration = integrations.get(p.integration_id);
  const host = integration ? ownHost(integration) ?? "provider default" : "unknown integration";
  return `${host} (via @${p.integration_id})`;
}

const secretField = (record) => ({
  name: "key", label: "Secret", type: "password",
  hint: record ? `Stored: ${hint(record) ?? "none"}. Leave blank to keep it.` : "The provider's API key; stored encrypted, never shown again.",
});
const models = (record = {}) => ({ name: "allowed_models", label: "Allowed models", type: "list", value: record.allowed_models,
  empty: record.id ? [] : "omit", hint: "Comma-separated; blank: all." });
const note = (record = {}, name = "note") => ({ name, label: "Note", value: record[name], empty: record.id ? null : "omit" });
const slug = { name: "slug", label: "Slug", placeholder: "team-a", hint: "Callers use it as @slug; blank: made from the name." };
const reset = { name: "reset_usage", label: "Start the budget afresh", type: "checkbox" };

// Per kind: where its API is, and the fields its create and update bodies take (control/providers.py).
const KINDS = [
  { path: "/virtual-keys", title: "Virtual keys", noun: "virtual key", limits: true,
    fields: (r) => (r ? [
      { name: "name", label: "Name", value: r.name }, secretField(r),
      { name: "custom_host", label: "Custom host", value: r.model_config?.customHost, empty: null },
      { name: "resourceName", label: "Azure resource name", value: r.model_config?.resourceName, empty: null },
      models(r), note(r), ...limitFields(r), reset,
    ] : [
      { name: "name", label: "Name", required: true },
      { name: "provider", label: "Provider", required: true, placeholder: "openai", hint: "A provider id: openai, anthropic, azure-openai, replicate…" },
      slug, secretField(),
      { name: "custom_host", label: "Custom host", placeholder: "https://llm.example.com/v1", hint: "Blank: the provider's own API." },
      { name: "resourceName", label: "Azure resource name" },
      models(), note(), ...limitFields(),
    ]) },
  { path: "/integrations", title: "Integrations", noun: "integration",
    fields: (r) => (r ? [
      { name: "name", label: "Name", value: r.name }, secretField(r),
      { name: "configurations", label: "Configurations", type: "json", value: r.configurations, empty: {} },
      models(r), note(r, "description"),
    ] : [
      { name: "name", label: "Name", required: true },
      { name: "ai_provider_id", label: "Provider", required: true, placeholder: "openai" },
      slug, secretField(),
      { name: "configurations", label: "Configurations", type: "json", placeholder: '{"custom_host": "https://llm.example.com/v1"}' },
      models(), note({}, "description"),
    ]) },
  { path: "/providers", title: "Providers", noun: "provider", limits: true,
    fields: (r) => (r ? [{ name: "name", label: "Name", value: r.name }, models(r), note(r), ...limitFields(r), reset] : [
      { name: "name", label: "Name", required: true },
      { name: "integration_id", label: "Integration", required: true, hint: "The slug of the integration whose secret it uses." },
      slug, models(), note(), ...limitFields(),
    ]) },
];

export class ProvidersPage {
  constructor(container) {
    this.container = container;
  }

  async show() {
    const head = () => h("header", { class: "page-head" }, h("h1", {}, "Providers"));
    fill(this.container, head(), h("p", { class: "muted" }, "Loading…"));
    const answers = await Promise.all(KINDS.map((kind) => get(kind.path, { page_size: PAGE_SIZE }).catch((error) => error)));
    // A provider sends to its integration's host: the integrations are on this page, so name that host.
    const listed = answers[KINDS.findIndex((kind) => kind.path === "/integrations")].data ?? [];
    const integrations = new Map(listed.map((record) => [record.slug, record]));
    fill(this.container, head(), KINDS.map((kind, index) => this.section(kind, answers[index], integrations)));
  }

  section(kind, answer, integrations) {
    const add = h("button", { type: "button", class: "primary small", onclick: () => this.create(kind) }, `Add ${kind.noun}`);
    const title = (text) => h("div", { class: "group-head" }, h("h2", {}, text), add);
    if (answer instanceof Error) {
      return h("section", { class: "group", dataset: { kind: kind.noun } }, title(kind.title), failure(answer));
    }
    const more = answer.total > answer.data.length ? ` (first ${answer.data.length} of ${answer.total})` : "";
    return h("section", { class: "group", dataset: { kind: kind.noun } }, title(`${kind.title}${more}`),
      table(this.columns(kind, integrations), answer.data, { empty: `No ${kind.title.toLowerCase()}.` }));
  }

  columns(kind, integrations) {
    return [
      { label: "Slug", cell: (p) => h("span", { class: "mono" }, p.slug ? `@${p.slug}` : "—") },
      { label: "Name", cell: (p) => p.name ?? "—" },
      { label: "Provider", cell: providerId },
      { label: "Secret", cell: (p) => h("span", { class: "mono" }, hint(p) ?? "—") },
      { label: "Host", cell: (p) => h("span", { class: "mono" }, customHost(p, integrations)) },
      { label: "Models", cell: (p) => (p.allowed_models?.length ? p.allowed_models.join(", ") : "all") },
      kind.limits ? { label: "Usage", class: "usage-cell", cell: (p) => usageBars(p.usage) } : null,
      { label: "Note", cell: (p) => p.note ?? p.description ?? "" },
      { label: "Created", class: "nowrap", cell: (p) => fmt.dateTime(p.created_at) },
      { label: "", class: "nowrap", cell: (p) => rowActions(
        ["Edit", () => this.edit(kind, p)],
        ["Remove", () => this.remove(kind, p), "danger"],
      ) },
    ].filter(Boolean);
  }

  async create(kind) {
    const created = await formDialog({ title: `Add a ${kind.noun}`, fields: kind.fields(null), submitLabel: "Add",
      submit: (body) => send("POST", kind.path, body) });
    if (created) this.show();
  }

  async edit(kind, record) {
    const saved = await formDialog({ title: `Edit ${kind.noun} @${record.slug}`, fields: kind.fields(record),
      submit: (body) => send("PUT", `${kind.path}/${encodeURIComponent(record.slug)}`, body) });
    if (saved) this.show();
  }

  async remove(kind, record) {
    if (!(await confirmAction(`Remove the ${kind.noun} @${record.slug}? Requests naming it will be refused.`, "Remove"))) return;
    await runAction(this, () => send("DELETE", `${kind.path}/${encodeURIComponent(record.slug)}`));
  }

  destroy() {}
}
