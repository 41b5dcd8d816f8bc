// Building DOM nodes. Every value from the gateway goes in as text (never as HTML): logs carry request
// bodies, paths and metadata written by anyone holding an inference key.

/** h("td", {class: "num"}, "12") → <td class="num">12</td>. Strings become text nodes; null is skipped. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** The same for SVG elements. */
export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

function setAttributes(node, attrs) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replace a node's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A table from column specs: [{label, cell: row => node|string, class}]. */
export function table(columns, rows, { empty = "Nothing here yet.", onRow } = {}) {
  const head = h("tr", {}, columns.map((column) => h("th", { class: column.class }, column.label)));
  const body = h("tbody");
  for (const row of rows) {
    const tr = h("tr", {}, columns.map((column) => h("td", { class: column.class }, column.cell(row))));
    if (onRow) {
      tr.classList.add("clickable");
      tr.tabIndex = 0;
      tr.addEventListener("click", () => onRow(row));
      tr.addEventListener("keydown", (event) => event.key === "Enter" && onRow(row));
    }
    body.append(tr);
  }
  if (!rows.length) body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty)));
  return h("div", { class: "scroll" }, h("table", { class: "grid" }, h("thead", {}, head), body));
}

/** The message box shown where a request failed. */
export function failure(error) {
  return h("div", { class: "notice error", role: "alert" }, error?.message ?? String(error));
}
