// Gateway API keys: who may call the gateway, with which scopes, until when. Only the prefix is shown.

import { get } from "./api.js";
import { failure, fill, h, table } from "./dom.js";
import * as fmt from "./format.js";

const PAGE_SIZE = 1000;

const list = (values) => (values?.length ? values.join(", ") : "all");

const COLUMNS = [
  { label: "Name", cell: (k) => k.name },
  { label: "Key", cell: (k) => h("span", { class: "mono" }, k.key ?? "—") },
  { label: "Status", cell: (k) => h("span", { class: `tag key-${k.status}` }, k.status ?? "—") },
  { label: "Scopes", cell: (k) => (k.scopes ?? []).map((scope) => h("span", { class: "tag" }, scope)) },
  { label: "Providers", cell: (k) => list(k.allowed_providers) },
  { label: "Expires", class: "nowrap", cell: (k) => (k.expires_at ? fmt.dateTime(k.expires_at) : "never") },
  { label: "Revoked", class: "nowrap", cell: (k) => (k.revoked_at ? fmt.dateTime(k.revoked_at) : "—") },
  { label: "Last used", class: "nowrap", cell: (k) => fmt.dateTime(k.last_used_at) },
  { label: "Created", class: "nowrap", cell: (k) => fmt.dateTime(k.created_at) },
  { label: "ID", cell: (k) => h("span", { class: "mono muted" }, k.id) },
];

export class KeysPage {
  constructor(container) {
    this.container = container;
  }

  async show() {
    const head = h("header", { class: "page-head" }, h("h1", {}, "Keys"));
    fill(this.container, head, h("p", { class: "muted" }, "Loading…"));
    try {
      const answer = await get("/api-keys", { page_size: PAGE_SIZE });
      const note = answer.total > answer.data.length ? h("p", { class: "muted" }, `First ${answer.data.length} of ${answer.total}.`) : null;
      fill(this.container, head, note, table(COLUMNS, answer.data, { empty: "No keys." }));
    } catch (error) {
      fill(this.container, head, failure(error));
    }
  }

  destroy() {}
}
