// Gateway API keys: who may call the gateway, with which scopes, until when. Only the prefix is listed;
// a new or rotated key's secret is shown once, in a dialog, then never again.

import { get, send } from "./api.js";
import { failure, fill, h, table } from "./dom.js";
import { confirmAction, formDialog, limitFields, rowActions, runAction, showSecretOnce } from "./forms.js";
import * as fmt from "./format.js";
import { usageBars } from "./usage.js";

const PAGE_SIZE = 1000;

const list = (values) => (values?.length ? values.join(", ") : "all");

const keyFields = (key = {}) => [
  { name: "name", label: "Name", value: key.name, required: !key.id },
  { name: "scopes", label: "Scopes", type: "list", value: key.scopes, placeholder: "inference",
    hint: "Comma-separated, e.g. inference, logs.read (or Portkey's names); blank on a new key: inference." },
  { name: "allowed_providers", label: "Allowed providers", type: "list", value: key.allowed_providers,
    empty: key.id ? [] : "omit", placeholder: "openai, @team-a", hint: "Provider ids and @slugs; blank: all." },
  { name: "expires_at", label: "Expires", type: "datetime", value: key.expires_at, empty: key.id ? null : "omit",
    hint: "Local time; blank: never." },
  ...limitFields(key),
  key.id ? { name: "reset_usage", label: "Start the budget afresh", type: "checkbox" } : null,
].filter(Boolean);

export class KeysPage {
  constructor(container) {
    this.container = container;
  }

  async show() {
    const create = h("button", { type: "button", class: "primary", onclick: () => this.create() }, "New key");
    const head = h("header", { class: "page-head" }, h("h1", {}, "Keys"), create);
    fill(this.container, head, h("p", { class: "muted" }, "Loading…"));
    try {
      const answer = await get("/api-keys", { page_size: PAGE_SIZE });
      const note = answer.total > answer.data.length ? h("p", { class: "muted" }, `First ${answer.data.length} of ${answer.total}.`) : null;
      fill(this.container, head, note, table(this.columns(), answer.data, { empty: "No keys." }));
    } catch (error) {
      fill(this.container, head, failure(error));
    }
  }

  columns() {
    return [
      { label: "Name", cell: (k) => k.name },
      { label: "Key", cell: (k) => h("span", { class: "mono" }, k.key ?? "—") },
      { label: "Status", cell: (k) => h("span", { class: `tag key-${k.status}` }, k.status ?? "—") },
      { label: "Scopes", cell: (k) => (k.scopes ?? []).map((scope) => h("span", { class: "tag" }, scope)) },
      { label: "Providers", cell: (k) => list(k.allowed_providers) },
      { label: "Usage", class: "usage-cell", cell: (k) => usageBars(k.usage) },
      { label: "Expires", class: "nowrap", cell: (k) => (k.expires_at ? fmt.dateTime(k.expires_at) : "never") },
      { label: "Revoked", class: "nowrap", cell: (k) => (k.revoked_at ? fmt.dateTime(k.revoked_at) : "—") },
      { label: "Last used", class: "nowrap", cell: (k) => fmt.dateTime(k.last_used_at) },
      { label: "Created", class: "nowrap", cell: (k) => fmt.dateTime(k.created_at) },
      { label: "ID", cell: (k) => h("span", { class: "mono muted" }, k.id) },
      { label: "", class: "nowrap", cell: (k) => rowActions(
        ["Edit", () => this.edit(k)],
        ["Rotate", () => this.rotate(k)],
        k.status === "active" ? ["Revoke", () => this.revoke(k), "danger"] : null,
        ["Delete", () => this.remove(k), "danger"],
      ) },
    ];
  }

  async create() {
    const created = await formDialog({ title: "New gateway key", fields: keyFields(), submitLabel: "Create key",
      submit: (body) => send("POST", "/api-keys", body) });
    if (!created) return;
    await showSecretOnce(`Key created: ${created.id}`, created.key);
    this.show();
  }

  async edit(key) {
    const saved = await formDialog({ title: `Edit key ${key.name}`, fields: keyFields(key),
      submit: (body) => send("PUT", `/api-keys/${encodeURIComponent(key.id)}`, body) });
    if (saved) this.show();
  }

  async rotate(key) {
    if (!(await confirmAction(`Rotate ${key.name}? Its current secret stops working at once, everywhere it is used.`, "Rotate"))) return;
    await runAction(this, async () => {
      const rotated = await send("POST", `/api-keys/${encodeURIComponent(key.id)}/rotate`);
      await showSecretOnce(`New secret for ${key.name}`, rotated.key);
    });
  }

  async revoke(key) {
    if (!(await confirmAction(`Revoke ${key.name}? It stops working on the next request; this cannot be undone.`, "Revoke"))) return;
    await runAction(this, () => send("POST", `/api-keys/${encodeURIComponent(key.id)}/revoke`));
  }

  async remove(key) {
    if (!(await confirmAction(`Delete ${key.name}? The key is removed for good; its logs stay.`, "Delete"))) return;
    await runAction(this, () => send("DELETE", `/api-keys/${encodeURIComponent(key.id)}`));
  }

  destroy() {}
}
