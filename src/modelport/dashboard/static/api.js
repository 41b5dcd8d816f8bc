// The gateway's JSON API as the dashboard calls it. The admin key lives in sessionStorage (gone when the
// tab closes) and travels only in the x-portkey-api-key header: never in a URL, where proxies, history and
// Referer headers would keep it.

const STORAGE_KEY = "modelport.adminKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  key: () => sessionStorage.getItem(STORAGE_KEY),
  save: (key) => sessionStorage.setItem(STORAGE_KEY, key),
  clear: () => sessionStorage.removeItem(STORAGE_KEY),
};

/** "?a=1&b=2" from an object, leaving out empty values. */
export function queryString(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function call(path, params, { key = session.key(), signal, method = "GET", body } = {}) {
  const headers = { "x-portkey-api-key": key ?? "", accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`/v1${path}${queryString(params)}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    signal,
  });
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    const message = body?.error?.message ?? `${response.status} ${response.statusText}`;
    if (response.status === 401) window.dispatchEvent(new CustomEvent("modelport:unauthorized"));
    throw new ApiError(response.status, message);
  }
  return response;
}

/** GET /v1<path> as JSON. */
export async function get(path, params = {}, options = {}) {
  return (await call(path, params, options)).json();
}

/** POST, PUT or DELETE /v1<path> with a JSON body: the same control-plane call (and rules) as the CLI's.
 *  A refusal throws ApiError carrying the API's own message, which the forms show as is. */
export async function send(method, path, body) {
  return (await call(path, {}, { method, body })).json();
}

/** GET /v1<path> and hand the body to the browser as a file download (the key cannot go in a link). */
export async function download(path, params, fallbackName) {
  const response = await call(path, params);
  const disposition = response.headers.get("content-disposition") ?? "";
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
