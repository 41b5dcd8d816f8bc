// Client-side routes under /dashboard; the server answers index.html for every one of them.
//   /dashboard/                 overview
//   /dashboard/logs?<filters>   logs (filters live in the query string, so a view can be bookmarked)
//   /dashboard/logs/<id>        logs with one record open
//   /dashboard/predictions?<filters>, /dashboard/predictions/<id>   Replicate predictions, one open
//   /dashboard/providers, /dashboard/keys, /dashboard/configs

export const BASE = "/dashboard";

let listener = () => {};

export function onNavigate(callback) {
  listener = callback;
  window.addEventListener("popstate", () => listener());
}

export function navigate(url, { replace = false } = {}) {
  if (url === location.pathname + location.search) return;
  history[replace ? "replaceState" : "pushState"](null, "", url);
  listener();
}

export function currentRoute() {
  const rest = location.pathname.slice(BASE.length).replace(/^\/+|\/+$/g, "");
  const [name, id] = rest.split("/").map(decodeURIComponent);
  return { name: name || "overview", id: id || null, search: location.search };
}
