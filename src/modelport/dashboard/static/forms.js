// The management dialogs: a form for a record, a confirmation for what cannot be undone, and a new
// secret shown once. Forms check nothing themselves beyond JSON syntax: the control-plane API is the
// one set of rules (as for the CLI), and when it refuses, its message is shown as it worded it.

import { failure, h } from "./dom.js";

/** A modal <dialog> (native: focus is trapped and Escape closes it); removed from the page once closed. */
function modal(className, ...children) {
  const dialog = h("dialog", { class: `dialog ${className}` }, ...children);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Resolves true only when the person presses the named action (Cancel, Escape: false). */
export function confirmAction(message, verb) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "button", class: "danger", onclick: () => dialog.close("ok") }, verb);
    const dialog = modal("confirm",
      h("p", {}, message),
      h("div", { class: "dialog-buttons" },
        h("button", { type: "button", onclick: () => dialog.close("cancel") }, "Cancel"), ok));
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"));
    ok.focus();
  });
}

/** The only time a key's secret is on screen: closing the dialog removes it from the page for good. */
export function showSecretOnce(title, secret) {
  const status = h("span", { class: "muted", role: "status" });
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      status.textContent = "Copied.";
    } catch {
      // No clipboard permission (an http:// origin other than localhost): select it for Ctrl+C instead.
      getSelection().selectAllChildren(code);
      status.textContent = "Selected: press Ctrl+C to copy.";
    }
  };
  const code = h("code", { class: "secret mono" }, secret);
  const dialog = modal("secret-once",
    h("h2", {}, title),
    h("p", {}, "This secret is shown once: store it now. The gateway keeps only its hash and cannot show it again."),
    h("div", { class: "secret-row" }, code, h("button", { type: "button", class: "copy", onclick: copy }, "Copy")),
    h("div", { class: "dialog-buttons" }, status, h("button", { type: "button", class: "primary", onclick: () => dialog.close() }, "Done")));
  return new Promise((resolve) => dialog.addEventListener("close", resolve));
}

/* A field: {name, label, type, value, hint, required, options, empty}
 *   type   text (default) | password | list (comma-separated → array) | json | datetime | checkbox | textarea
 *   empty  what a blank field sends: "omit" (the default: leave the record's value as it is) or a value
 *          such as null or [] (clear it). */

function input(field) {
  const common = { name: field.name, id: `field-${field.name}`, required: field.required, placeholder: field.placeholder };
  if (field.type === "json" || field.type === "textarea") {
    const area = h("textarea", { ...common, rows: field.rows ?? 3, spellcheck: "false" });
    area.value = field.type === "json" && field.value != null ? JSON.stringify(field.value, null, 2) : field.value ?? "";
    return area;
  }
  if (field.type === "checkbox") return h("input", { ...common, type: "checkbox", checked: Boolean(field.value) });
  const type = field.type === "password" ? "password" : field.type === "datetime" ? "datetime-local" : "text";
  const node = h("input", { ...common, type, autocomplete: field.type === "password" ? "new-password" : "off", spellcheck: "false" });
  node.value = field.type === "list" ? (field.value ?? []).join(", ") : field.type === "datetime" ? localInput(field.value) : field.value ?? "";
  return node;
}

/** "2026-12-03T10:15" (what datetime-local shows, local time) from an ISO time. */
function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

function valueOf(field, node) {
  if (field.type === "checkbox") return node.checked ? true : field.empty ?? "omit";
  const raw = node.value.trim();
  if (!raw) return field.empty ?? "omit";
  if (field.type === "list") return raw.split(",").map((item) => item.trim()).filter(Boolean);
  if (field.type === "datetime") return new Date(raw).toISOString();
  if (field.type === "json") {
    try {
      return JSON.parse(raw);
    } catch (error) {
      throw new Error(`${field.label}: not valid JSON (${error.message})`);
    }
  }
  return raw;
}

/** A form in a dialog; ``submit(body)`` makes the API call. Resolves with its answer, or null if cancelled. */
export function formDialog({ title, fields, submitLabel = "Save", submit }) {
  return new Promise((resolve) => {
    const nodes = fields.map((field) => [field, input(field)]);
    const error = h("p", { class: "error form-error", role: "alert" });
    const button = h("button", { type: "submit", class: "primary" }, submitLabel);
    const rows = nodes.map(([field, node]) => h("div", { class: `form-row ${field.type ?? "text"}` },
      h("label", { for: node.id }, field.label, field.required ? " *" : ""), node,
      field.hint ? h("p", { class: "hint muted" }, field.hint) : null));
    let answer = null;
    const form = h("form", { method: "dialog", class: "record-form", novalidate: true }, h("h2", {}, title), rows, error,
      h("div", { class: "dialog-buttons" }, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), button));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      button.disabled = true;
      try {
        const body = {};
        for (const [field, node] of nodes) {
          const value = valueOf(field, node);
          if (value !== "omit") body[field.name] = value;
        }
        answer = await submit(body);
        dialog.close();
      } catch (failed) {
        error.textContent = failed.message;
      } finally {
        button.disabled = false;
      }
    });
    const dialog = modal("form", form);
    dialog.addEventListener("close", () => resolve(answer));
    nodes[0]?.[1].focus();
  });
}

/** A row's buttons; a click does not also open the row. */
export function rowActions(...buttons) {
  return h("div", { class: "row-actions" }, buttons.filter(Boolean).map(([label, action, kind]) =>
    h("button", { type: "button", class: `small ${kind ?? ""}`, onclick: (event) => { event.stopPropagation(); action(); } }, label)));
}

/** A shared field: limits travel as the API's own JSON (docs/limits.md), so every rule it knows can be set. */
export const limitFields = (record = {}) => [
  { name: "rate_limits", label: "Rate limits", type: "json", value: record.rate_limits, empty: null,
    placeholder: '[{"type": "requests", "unit": "rpm", "value": 60}]', hint: "requests or tokens per rpm, rph, rpd or rpw; blank: none." },
  { name: "usage_limits", label: "Budget", type: "json", value: record.usage_limits, empty: null,
    placeholder: '{"type": "cost", "credit_limit": 25, "alert_threshold": 20, "periodic_reset": "monthly"}',
    hint: "credit_limit in USD (type cost) or tokens; blank: none." },
];

/** Run one management action, then redraw the page; a refusal is shown under its heading, in the API's words. */
export async function runAction(page, action) {
  try {
    await action();
    await page.show();
  } catch (error) {
    await page.show();
    page.container.querySelector(".page-head").after(failure(error));
  }
}
