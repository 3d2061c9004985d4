// cartlab dashboard: drives both carts from this page (same-origin fetches, so each
// component's session cookie just works) and draws which instance served each request.
//
// It works on plain `spin up`, where only the cart API exists: the timeline is then built
// from the page's own responses (serverId). Under `cartlab up` the /_lab/ API adds the
// lab controls and a live feed of every instance's lifecycle and requests.
//
// The script is four ES modules, each importing only those below it: this one (the
// columns' behaviour, the whole journey, start-up) -> lab.js (the /_lab/ API) ->
// timeline.js (the lanes and their drawing) -> page.js (the state they share).

import { detectLab, recycle } from "./lab.js";
import { CARTS, colourOf, columns, plural } from "./page.js";
import { ownCrash, ownRequest, plot, render } from "./timeline.js";

const PRODUCTS = {
  macbook: { item: "MacBook Pro", price: 2500 },
  iphone: { item: "iPhone 15", price: 1200 },
};
const RECENT_REQUESTS = 8;

const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function chip(el, component, id) {
  el.textContent = id ?? "?";
  el.style.setProperty("--c", colourOf(component, id));
}

// ---- the columns ---------------------------------------------------------------------------

function buildColumn(cart) {
  const template = document.getElementById("column-template");
  const node = template.content.firstElementChild.cloneNode(true);
  node.dataset.cart = cart.key;
  node.querySelector('[data-part="title"]').textContent = cart.component;
  node.querySelector('[data-part="where"]').textContent = cart.where;
  node.querySelector('[data-part="blurb"]').textContent = cart.blurb;
  for (const el of node.querySelectorAll("[data-testid]")) el.dataset.testid += `-${cart.key}`;
  const part = (id) => node.querySelector(`[data-testid="${id}-${cart.key}"]`);
  const col = {
    ...cart,
    node,
    instance: part("instance"),
    servedCount: node.querySelector('[data-part="served-count"]'),
    cart: part("cart"),
    total: part("total"),
    verdict: part("verdict"),
    verdictDetail: part("verdict-detail"),
    error: part("error"),
    requests: part("requests"),
    known: null, // { serverId, itemCount }: the cart as this page last saw it
    sizes: [], // { at, count }: items in the cart over time, for the timeline
    queue: Promise.resolve(),
    pending: 0,
  };
  node.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const { action, product } = button.dataset;
    if (action === "add") enqueue(col, () => add(col, PRODUCTS[product]));
    else if (action === "crash") enqueue(col, () => crash(col));
    else enqueue(col, () => read(col));
  });
  columns.set(cart.key, col);
  return node;
}

/** Runs `step` after the column's earlier steps; aria-busy says whether any is left. */
function enqueue(col, step) {
  col.pending += 1;
  col.node.setAttribute("aria-busy", "true");
  const run = col.queue.then(step).finally(() => {
    col.pending -= 1;
    if (col.pending === 0) col.node.setAttribute("aria-busy", "false");
  });
  col.queue = run.catch(() => {}); // a failed step must not stop the ones after it
  return run;
}

/** One request to a cart component. Never throws: failures come back as `error`. */
async function call(col, method, path, body) {
  const at = Date.now();
  const started = performance.now();
  let status = 0;
  let data = null;
  let headerId = null;
  let error = null;
  try {
    const response = await fetch(`/${col.key}${path}`, {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    status = response.status;
    headerId = response.headers.get("x-cartlab-instance");
    data = await response.json().catch(() => null);
  } catch (e) {
    error = `network error: ${e.message}`;
  }
  const ms = Math.round(performance.now() - started);
  const serverId = data?.serverId ?? headerId;
  if (!error && (status < 200 || status > 299)) {
    error = data?.error ? `${status} ${data.error.code}: ${data.error.message}` : `HTTP ${status}`;
  }
  col.error.textContent = error ?? "";
  if (serverId) {
    chip(col.instance, col.component, serverId);
    const count = data?.requestsServed;
    col.servedCount.textContent = count ? `request #${count} on it` : "";
  }
  const result = { at, method, path, status, ms, serverId, data, error };
  logRequest(col, result);
  ownRequest(col, result);
  return result;
}

async function add(col, product) {
  const r = await call(col, "POST", "/cart/add", product);
  if (r.data?.cart) showCart(col, r.data, 1);
}

async function read(col) {
  const r = await call(col, "GET", "/cart");
  if (r.data?.cart) showCart(col, r.data, 0);
}

async function crash(col) {
  const crashed = col.known?.serverId;
  const r = await call(col, "POST", "/crash");
  // The instance traps instead of answering: the runtime's 500 is the crash, not a fault.
  if (r.status === 500) {
    col.error.textContent = `crashed: the instance trapped and is gone (${r.error})`;
    ownCrash(col, r, crashed);
  }
}

/** Empties the cart (forgets the session) without judging: the journey's clean start. */
async function reset(col) {
  const r = await call(col, "DELETE", "/cart");
  if (r.data?.cart) showCart(col, r.data, null);
}

/**
 * Shows a cart answer. When a different instance answered than last time, it is the moment
 * of truth: did the cart we had come along? `added` is how many items this request added
 * (null: do not judge).
 */
function showCart(col, data, added) {
  const before = col.known;
  if (added !== null && before && before.itemCount > 0 && data.serverId !== before.serverId) {
    const kept = data.itemCount >= before.itemCount + added;
    setVerdict(
      col,
      kept ? "survived" : "lost",
      `${before.serverId} had ${plural(before.itemCount)}; ${data.serverId} answered with ` +
        `${plural(data.itemCount)}${added ? " after this add" : ""}.`,
    );
  }
  col.known = { serverId: data.serverId, itemCount: data.itemCount };

  const rows = data.cart.map((line) => {
    const tr = document.createElement("tr");
    for (const [text, numeric] of [
      [line.item, false],
      [String(line.quantity), true],
      [money.format(line.lineTotal), true],
    ]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (numeric) td.className = "num";
      tr.append(td);
    }
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 3;
    td.className = "empty";
    td.textContent = "Cart is empty";
    tr.append(td);
    rows.push(tr);
  }
  col.cart.tBodies[0].replaceChildren(...rows);
  col.cart.dataset.items = String(data.itemCount);
  col.total.textContent = money.format(data.total);
  col.sizes.push({ at: Date.now(), count: data.itemCount });
  render();
}

function setVerdict(col, kind, detail) {
  col.verdict.dataset.kind = kind ?? "";
  col.verdict.textContent = { lost: "CART LOST!", survived: "Cart survived!" }[kind] ?? "";
  col.verdictDetail.textContent = detail ?? "";
}

function logRequest(col, r) {
  const li = document.createElement("li");
  const tag = document.createElement("span");
  tag.className = "chip";
  chip(tag, col.component, r.serverId);
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = `${r.method} ${r.path}`;
  const status = document.createElement("span");
  status.className = r.error ? "status bad" : "status";
  status.textContent = r.status ? String(r.status) : "failed";
  const ms = document.createElement("span");
  ms.className = "muted small";
  ms.textContent = `${r.ms} ms`;
  li.append(tag, what, status, ms);
  if (r.error) li.title = r.error;
  col.requests.prepend(li);
  while (col.requests.children.length > RECENT_REQUESTS) col.requests.lastElementChild.remove();
}

// ---- the whole journey ---------------------------------------------------------------------

/**
 * The seed's story on both carts at once: a clean cart, two adds, a read, a crash, a pause,
 * and the read that tells whether the cart survived.
 */
async function journey() {
  await Promise.all(
    [...columns.values()].map((col) =>
      enqueue(col, async () => {
        setVerdict(col, null);
        await reset(col);
        await add(col, PRODUCTS.macbook);
        await add(col, PRODUCTS.iphone);
        await read(col);
        await crash(col);
        await sleep(1_000);
        await read(col);
      }),
    ),
  );
}

/**
 * Runs `task` on a click, ignoring clicks until it is done. aria-disabled, not disabled: a
 * disabled button would drop the keyboard focus.
 */
function bindTask(button, task) {
  button.addEventListener("click", async () => {
    if (button.getAttribute("aria-disabled") === "true") return;
    button.setAttribute("aria-disabled", "true");
    try {
      await task();
    } finally {
      button.removeAttribute("aria-disabled");
    }
  });
}

// ---- start -----------------------------------------------------------------------------------

document.getElementById("columns").append(...CARTS.map(buildColumn));
bindTask(document.getElementById("journey"), journey);
bindTask(document.getElementById("recycle-all"), () => recycle("all"));
bindTask(document.getElementById("rolling"), () => recycle("rolling"));
// Keep the window sliding, but hold still under the pointer so mark tooltips can be read.
setInterval(() => plot.matches(":hover") || render(), 500);
window.addEventListener("resize", render);
render();
detectLab();
// Show what the carts hold now (a reload keeps the cookies), without a verdict.
for (const col of columns.values()) enqueue(col, () => read(col));
