// Stored providers: Portkey's virtual keys, integrations and providers (one store table, three APIs).
// Secrets are never sent by the API; the masked hint is all there is to show.

import { get } from "./api.js";
import { failure, fill, h, table } from "./dom.js";
import * as fmt from "./format.js";

const KINDS = [
  ["/virtual-keys", "Virtual keys"],
  ["/integrations", "Integrations"],
  ["/providers", "Providers"],
];
const PAGE_SIZE = 1000; // admin lists are small; the control plane's largest page

// Field names as the control plane answers them (Portkey's, which differ per kind).
const providerId = (p) => p.ai_provider_name ?? p.ai_provider_id ?? p.provider ?? "—";
const customHost = (p) => p.model_config?.customHost ?? p.configurations?.custom_host ?? p.custom_host
  ?? (p.integration_id ? `via integration @${p.integration_id}` : "—");

const COLUMNS = [
  { label: "Slug", cell: (p) => h("span", { class: "mono" }, p.slug ? `@${p.slug}` : "—") },
  { label: "Name", cell: (p) => p.name ?? "—" },
  { label: "Provider", cell: providerId },
  { label: "Secret", cell: (p) => h("span", { class: "mono" }, p.masked_api_key ?? p.masked_key ?? "—") },
  { label: "Custom host", cell: (p) => h("span", { class: "mono" }, customHost(p)) },
  { label: "Models", cell: (p) => (p.allowed_models?.length ? p.allowed_models.join(", ") : "all") },
  { label: "Note", cell: (p) => p.note ?? p.description ?? "" },
  { label: "Created", class: "nowrap", cell: (p) => fmt.dateTime(p.created_at) },
];

export class ProvidersPage {
  constructor(container) {
    this.container = container;
  }

  async show() {
    fill(this.container, h("header", { class: "page-head" }, h("h1", {}, "Providers")), h("p", { class: "muted" }, "Loading…"));
    const sections = await Promise.all(KINDS.map(async ([path, title]) => {
      try {
        const answer = await get(path, { page_size: PAGE_SIZE });
        const note = answer.total > answer.data.length ? ` (first ${answer.data.length} of ${answer.total})` : "";
        return h("section", { class: "group" }, h("h2", {}, `${title}${note}`), table(COLUMNS, answer.data, { empty: `No ${title.toLowerCase()}.` }));
      } catch (error) {
        return h("section", { class: "group" }, h("h2", {}, title), failure(error));
      }
    }));
    fill(this.container, h("header", { class: "page-head" }, h("h1", {}, "Providers")), sections);
  }

  destroy() {}
}
