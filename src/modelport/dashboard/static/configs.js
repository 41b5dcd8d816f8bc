// Saved routing configs (x-portkey-config: <id or slug>). The JSON is checked by the API with the code the
// gateway runs on every request, so the form shows the API's own message for a config it would refuse.

import { get, send } from "./api.js";
import { failure, fill, h, table } from "./dom.js";
import { confirmAction, formDialog, rowActions, runAction } from "./forms.js";
import * as fmt from "./format.js";

const PAGE_SIZE = 1000;

const configFields = (config) => [
  { name: "name", label: "Name", value: config?.name, required: !config },
  config ? null : { name: "slug", label: "Slug", hint: "Callers send it as x-portkey-config; blank: the config id." },
  { name: "config", label: "Config (JSON)", type: "json", value: config?.config, required: true, rows: 12,
    placeholder: '{"strategy": {"mode": "fallback"}, "targets": [{"provider": "@openai-prod"}, {"provider": "@anthropic-main"}]}' },
  config ? null : { name: "is_default", label: "Use for requests that send no x-portkey-config", type: "checkbox" },
].filter(Boolean);

export class ConfigsPage {
  constructor(container) {
    this.container = container;
  }

  async show() {
    const create = h("button", { type: "button", class: "primary", onclick: () => this.create() }, "New config");
    const head = h("header", { class: "page-head" }, h("h1", {}, "Configs"), create);
    fill(this.container, head, h("p", { class: "muted" }, "Loading…"));
    try {
      const answer = await get("/configs", { page_size: PAGE_SIZE });
      fill(this.container, head, table(this.columns(), answer.data, { empty: "No saved configs." }));
    } catch (error) {
      fill(this.container, head, failure(error));
    }
  }

  columns() {
    return [
      { label: "Name", cell: (c) => [c.name, c.is_default ? h("span", { class: "tag default" }, "default") : null] },
      { label: "Slug", cell: (c) => h("span", { class: "mono" }, c.slug) },
      { label: "Status", cell: (c) => h("span", { class: `tag config-${c.status}` }, c.status) },
      { label: "Strategy", cell: (c) => c.config?.strategy?.mode ?? "single" },
      { label: "Targets", class: "num", cell: (c) => String(c.config?.targets?.length ?? 1) },
      { label: "Updated", class: "nowrap", cell: (c) => fmt.dateTime(c.last_updated_at ?? c.created_at) },
      { label: "ID", cell: (c) => h("span", { class: "mono muted" }, c.id) },
      { label: "", class: "nowrap", cell: (c) => rowActions(
        ["Edit", () => this.edit(c)],
        c.is_default || c.status !== "active" ? null : ["Make default", () => runAction(this, () => this.put(c, { is_default: true }))],
        c.status === "active" ? ["Archive", () => runAction(this, () => this.put(c, { status: "archived" }))]
          : ["Restore", () => runAction(this, () => this.put(c, { status: "active" }))],
        ["Delete", () => this.remove(c), "danger"],
      ) },
    ];
  }

  put(config, body) {
    return send("PUT", `/configs/${encodeURIComponent(config.id)}`, body);
  }

  async create() {
    const created = await formDialog({ title: "New config", fields: configFields(null), submitLabel: "Save config",
      submit: (body) => send("POST", "/configs", body) });
    if (created) this.show();
  }

  async edit(config) {
    const saved = await formDialog({ title: `Edit config ${config.name}`, fields: configFields(config),
      submit: (body) => this.put(config, body) });
    if (saved) this.show();
  }

  async remove(config) {
    if (!(await confirmAction(`Delete the config ${config.name}? Requests that name it will be refused.`, "Delete"))) return;
    await runAction(this, () => send("DELETE", `/configs/${encodeURIComponent(config.id)}`));
  }

  destroy() {}
}
