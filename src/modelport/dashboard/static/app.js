// The dashboard's entry: sign-in, sign-out, and which page shows for the current path.

import { get, session } from "./api.js";
import { ConfigsPage } from "./configs.js";
import { KeysPage } from "./keys.js";
import { LogsPage } from "./logs.js";
import { OverviewPage } from "./overview.js";
import { PredictionsPage } from "./predictions.js";
import { ProvidersPage } from "./providers.js";
import { BASE, currentRoute, navigate, onNavigate } from "./router.js";

const PAGES = {
  overview: ["Overview", OverviewPage],
  logs: ["Logs", LogsPage],
  predictions: ["Predictions", PredictionsPage],
  providers: ["Providers", ProvidersPage],
  keys: ["Keys", KeysPage],
  configs: ["Configs", ConfigsPage],
};

const byId = (id) => document.getElementById(id);
let current = null; // { name, page }

async function signIn(event) {
  event.preventDefault();
  const input = byId("signin-key");
  const key = input.value.trim();
  const button = event.target.querySelector("button");
  byId("signin-error").textContent = "";
  button.disabled = true;
  try {
    // The cheapest call that needs what every page needs (logs.read); an admin key has it.
    await get("/logs", { limit: 1 }, { key });
    session.save(key);
    input.value = "";
    render();
  } catch (error) {
    byId("signin-error").textContent =
      error.status === 401 ? "That key was not accepted."
      : error.status === 403 ? "That key may not read logs: sign in with an admin key."
      : `Could not sign in: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

function signOut(message = "") {
  session.clear();
  current?.page.destroy();
  current = null;
  byId("page").replaceChildren();
  showSignIn(message);
}

function showSignIn(message) {
  byId("shell").hidden = true;
  byId("signin").hidden = false;
  byId("signin-error").textContent = message;
  byId("signin-key").focus();
}

function render() {
  if (!session.key()) return showSignIn("");
  byId("signin").hidden = true;
  byId("shell").hidden = false;
  const route = currentRoute();
  const [title, Page] = PAGES[route.name] ?? PAGES.overview;
  const name = PAGES[route.name] ? route.name : "overview";
  if (current?.name !== name) {
    current?.page.destroy();
    const container = byId("page");
    container.replaceChildren();
    current = { name, page: new Page(container) };
  }
  document.title = `${title} · ModelPort`;
  for (const link of document.querySelectorAll(".sidebar a")) {
    link.classList.toggle("active", link.dataset.route === name);
  }
  current.page.show(route);
}

/** Same-origin links under /dashboard change the page without a reload. */
function followLink(event) {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE) || link.hasAttribute("download")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

byId("signin-form").addEventListener("submit", signIn);
byId("signout").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("modelport:unauthorized", () => session.key() && signOut("The key is no longer accepted: sign in again."));
document.addEventListener("click", followLink);
onNavigate(render);
render();
