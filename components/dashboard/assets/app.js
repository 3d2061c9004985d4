// cartlab dashboard: drives both carts from this page (same-origin fetches, so each
// component's session cookie just works) and draws which instance served each request.
//
// It works on plain `spin up`, where only the cart API exists: the timeline is then built
// from the page's own responses (serverId). Under `cartlab up` the /_lab/ API adds the
// lab controls and a live feed of every instance's lifecycle and requests.

const CARTS = [
  {
    key: "stateful",
    component: "stateful-cart",
    where: "(memory)",
    blurb: "Sessions in the serving instance's memory: sticky, and gone with the instance.",
  },
  {
    key: "stateless",
    component: "stateless-cart",
    where: "(Redis / key-value)",
    blurb: "Sessions in the store, outside every instance: any instance serves any request.",
  },
];
const PRODUCTS = {
  macbook: { item: "MacBook Pro", price: 2500 },
  iphone: { item: "iPhone 15", price: 1200 },
};
const RECENT_REQUESTS = 8;
const WINDOW_MS = { min: 8_000, max: 60_000 }; // the timeline zooms out as history grows
const LANES_PER_COMPONENT = 6;
const POLL_MS = 2_000;

const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- instance colours ---------------------------------------------------------------------

/** Dark enough for white text, far apart from each other, and no red: red means a crash. */
const PALETTE = ["#1d4ed8", "#c2410c", "#15803d", "#7e22ce", "#be185d", "#0e7490", "#713f12"];
const coloured = new Map(); // component -> Map(id -> colour), in the order first seen

/**
 * One colour per instance, the same everywhere on the page. A hash of the id picks it; when
 * one of the component's recent instances already wears that colour, the next free one is
 * taken instead, so lanes side by side never look alike (random ids alone often collide).
 */
function colourOf(component, id) {
  if (!id) return "#8a8f98"; // an instance that has not answered yet has no serverId
  if (!coloured.has(component)) coloured.set(component, new Map());
  const seen = coloured.get(component);
  if (!seen.has(id)) {
    let hash = 0x811c9dc5; // FNV-1a
    for (const ch of id) hash = Math.imul(hash ^ ch.charCodeAt(0), 0x01000193);
    const taken = new Set([...seen.values()].slice(-(PALETTE.length - 1)));
    let i = (hash >>> 0) % PALETTE.length;
    while (taken.has(PALETTE[i])) i = (i + 1) % PALETTE.length;
    seen.set(id, PALETTE[i]);
  }
  return seen.get(id);
}

function chip(el, component, id) {
  el.textContent = id ?? "?";
  el.style.setProperty("--c", colourOf(component, id));
}

// ---- the columns ---------------------------------------------------------------------------

/** Per cart: its elements, the cart it last saw, and a queue so that clicks run in order. */
const columns = new Map();

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

function plural(n, noun = "item") {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
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

// ---- the timeline model ----------------------------------------------------------------------
//
// A lane is one instance of one component. It is known by its lab id ("stateful-cart#3", from
// the /_lab/ API) and/or its serverId (from the component's answers); whichever comes first
// creates it, and the other is attached when an event carries both.

const lanes = [];
let labLive = false; // /_lab/events is connected: it reports every request, ours included

function isCart(component) {
  return CARTS.some((cart) => cart.component === component);
}

function laneFor(component, { labId = null, serverId = null, slot = null }, at) {
  const mine = lanes.filter((l) => l.component === component);
  let lane = labId && mine.find((l) => l.labId === labId);
  const byServer = serverId && mine.find((l) => l.serverId === serverId);
  if (lane && byServer && lane !== byServer) {
    // The same instance seen both ways: fold the serverId lane into the lab one.
    lane.start = Math.min(lane.start, byServer.start);
    lane.end ??= byServer.end; // this page saw it crash before the lab stopped listing it
    lane.marks.push(...byServer.marks);
    lanes.splice(lanes.indexOf(byServer), 1);
  }
  lane ||= byServer;
  if (!lane) {
    lane = { component, labId, serverId, slot, start: at, lastSeen: at, end: null, marks: [] };
    lanes.push(lane);
  }
  lane.labId ??= labId;
  lane.serverId ??= serverId;
  lane.slot = slot ?? lane.slot;
  lane.start = Math.min(lane.start, at);
  lane.lastSeen = Math.max(lane.lastSeen, at);
  return lane;
}

function mark(lane, at, kind, label, failed = false) {
  lane.marks.push({ at, kind, label, failed });
  lane.lastSeen = Math.max(lane.lastSeen, at);
}

function endLane(lane, at, reason) {
  if (lane.end !== null) return;
  lane.end = at;
  mark(lane, at, reason === "trap" ? "crash" : "recycled", `${reason ?? "gone"}`);
}

/** Our own answers draw the timeline unless the lab feed already reports them. */
function ownRequest(col, r) {
  if (labLive || !r.serverId) return;
  const lane = laneFor(col.component, { serverId: r.serverId }, r.at);
  const label = `${r.method} /${col.key}${r.path} → ${r.status || "failed"} (${r.ms} ms)`;
  mark(lane, r.at, "request", label, !!r.error);
  render();
}

/** `crashed`: the instance that served this column last; the 500 itself comes from the runtime. */
function ownCrash(col, r, crashed) {
  const serverId = r.serverId ?? crashed;
  if (labLive || !serverId) return;
  endLane(laneFor(col.component, { serverId }, r.at), r.at + r.ms, "trap");
  render();
}

// ---- the lab API (cartlab up only) -----------------------------------------------------------

const lab = {
  controls: document.getElementById("lab-controls"),
  note: document.getElementById("lab-note"),
  mode: document.getElementById("lab-mode"),
  status: document.getElementById("lab-status"),
  source: document.getElementById("timeline-source"),
  polling: null,
};

async function detectLab() {
  const snapshot = await fetchJson("/_lab/instances");
  if (!Array.isArray(snapshot?.components)) {
    // Plain `spin up` (the dashboard's catch-all route answers 404 here).
    lab.note.hidden = false;
    lab.source.textContent = "Built from this page's own requests (no lab API here).";
    return;
  }
  lab.controls.hidden = false;
  applySnapshot(snapshot);
  connectEvents();
}

async function fetchJson(url, options) {
  try {
    const response = await fetch(url, { cache: "no-store", ...options });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

/** A full picture of the lab's instances (hello event, or polling): reconcile the lanes. */
function applySnapshot(snapshot) {
  const routing = snapshot.routing ? `, ${snapshot.routing} routing` : "";
  lab.mode.textContent = `lab host: ${snapshot.mode} mode${routing}.`;
  const now = Date.now();
  const alive = new Set();
  for (const { component, instances } of snapshot.components) {
    if (!isCart(component)) continue;
    for (const i of instances) {
      // An empty or restarting fleet slot (`empty`, `down`) lists no instance: its id is null,
      // and looking that up would find a lane known only by its serverId.
      if (!i.id) continue;
      const started = now - (i.ageMs ?? 0);
      const lane = laneFor(component, { labId: i.id, serverId: i.serverId, slot: i.slot }, started);
      // Listed means alive now. When polling (no feed to say when it ends) the lane must reach
      // now, or an idle instance's lane would stop at its last request and scroll away.
      lane.lastSeen = now;
      alive.add(lane);
    }
  }
  // Lab instances no longer listed have been recycled since the last look.
  for (const lane of lanes) if (lane.labId && !alive.has(lane)) endLane(lane, now, "recycled");
  render();
}

function connectEvents() {
  if (!("EventSource" in window)) return startPolling();
  const events = new EventSource("/_lab/events");
  const on = (type, handle) =>
    events.addEventListener(type, (e) => {
      try {
        handle(JSON.parse(e.data));
      } catch (error) {
        console.warn(`bad ${type} event`, error);
      }
      render();
    });
  events.addEventListener("open", () => {
    labLive = true;
    lab.source.textContent = "Live from the lab host's event feed (every client's requests).";
  });
  on("hello", applySnapshot);
  on("instance-started", (e) => {
    if (isCart(e.component)) laneFor(e.component, { labId: e.id, slot: e.slot }, e.at);
  });
  on("request", (e) => {
    if (!isCart(e.component)) return;
    const lane = laneFor(e.component, { labId: e.id, serverId: e.serverId, slot: e.slot }, e.at);
    const label = `${e.method} ${e.path} → ${e.status} (${Math.round(e.ms)} ms)`;
    mark(lane, e.at, "request", label, e.status >= 500);
  });
  on("instance-recycled", (e) => {
    if (isCart(e.component)) endLane(laneFor(e.component, { labId: e.id }, e.at), e.at, e.reason);
  });
  on("slot", (e) => {
    // A slot is a balancer position; its mark goes on the instance now in it.
    const inSlot = (l) => l.component === e.component && l.slot === e.slot && l.end === null;
    const lane = lanes.findLast(inSlot);
    if (lane) mark(lane, e.at, "slot", `slot ${e.slot}: ${e.state}`);
  });
  events.addEventListener("error", () => {
    // EventSource would retry on its own; polling is simpler to reason about.
    events.close();
    labLive = false;
    startPolling();
  });
}

function startPolling() {
  if (lab.polling) return;
  lab.source.textContent = "Lab instances polled every 2 s; requests from this page's own answers.";
  lab.polling = setInterval(async () => {
    const snapshot = await fetchJson("/_lab/instances");
    if (snapshot?.components) applySnapshot(snapshot);
  }, POLL_MS);
}

async function recycle(mode) {
  lab.status.textContent = mode === "rolling" ? "Rolling redeploy…" : "Recycling…";
  const result = await fetchJson("/_lab/recycle", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ mode }),
  });
  lab.status.textContent = result
    ? `Recycled ${plural(result.recycled.length, "instance")}.`
    : "Recycling failed.";
  lab.status.title = result?.recycled.join(", ") ?? "";
  if (result && !labLive) {
    const now = Date.now();
    for (const lane of lanes) {
      if (result.recycled.includes(lane.labId)) endLane(lane, now, "recycled");
    }
    render();
  }
}

// ---- the timeline drawing ------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const plot = document.getElementById("timeline");
const windowLabel = document.getElementById("timeline-window");
const LAYOUT = { label: 150, head: 20, row: 18, sizes: 30, axis: 18, right: 12 };

function svg(name, attrs = {}, title = null) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (title) {
    const tooltip = document.createElementNS(SVG, "title");
    tooltip.textContent = title;
    el.append(tooltip);
  }
  return el;
}

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    draw();
  });
}

function draw() {
  const now = Date.now();
  const first = Math.min(now, ...lanes.map((l) => l.start));
  const windowMs = Math.min(Math.max(now - first + 2_000, WINDOW_MS.min), WINDOW_MS.max);
  const from = now - windowMs;
  forget(from, now);
  const width = Math.max(plot.clientWidth, 400);
  const plotWidth = width - LAYOUT.label - LAYOUT.right;
  const x = (at) => LAYOUT.label + ((Math.max(at, from) - from) / windowMs) * plotWidth;
  const grid = []; // drawn first, under the marks
  const parts = [];
  let y = 0;

  for (const col of columns.values()) {
    // The instances alive in the window, the most recent last.
    const shown = lanes
      .filter((l) => l.component === col.component && laneEnd(l, now) >= from)
      .sort((a, b) => a.start - b.start)
      .slice(-LANES_PER_COMPONENT);
    parts.push(text(4, y + 14, `${col.component} ${col.where}`, "component"));
    y += LAYOUT.head;
    if (shown.length === 0) {
      parts.push(text(LAYOUT.label, y + 12, "no requests yet", "muted"));
      y += LAYOUT.row;
    }
    for (const lane of shown) {
      parts.push(drawLane(lane, y + LAYOUT.row / 2, x, now, from));
      y += LAYOUT.row;
    }
    parts.push(drawSizes(col, y, x, now, from));
    y += LAYOUT.sizes + 6;
  }

  // Time axis: at most 8 ticks, labelled in seconds before now.
  const step = [1, 2, 5, 10].find((s) => windowMs / 1000 / s <= 8) ?? 10;
  for (let s = 0; s <= windowMs / 1000; s += step) {
    const tx = x(now - s * 1000);
    grid.push(svg("line", { x1: tx, x2: tx, y1: 0, y2: y, class: "grid" }));
    parts.push(text(tx, y + 12, s === 0 ? "now" : `-${s}s`, "axis", "middle"));
  }
  const height = y + LAYOUT.axis;
  const root = svg("svg", {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": summary(),
  });
  root.append(...grid, ...parts);
  plot.replaceChildren(root);
  windowLabel.textContent = `last ${Math.round(windowMs / 1000)} s`;
}

/** Drops what has scrolled out of the window, so a page left open does not grow. */
function forget(from, now) {
  for (let i = lanes.length - 1; i >= 0; i--) {
    const lane = lanes[i];
    if (laneEnd(lane, now) < from) lanes.splice(i, 1);
    else lane.marks = lane.marks.filter((m) => m.at >= from);
  }
  for (const col of columns.values()) {
    // Keep the last point before the window: it is where the line enters.
    const firstInside = col.sizes.findIndex((p) => p.at >= from);
    const drop = (firstInside === -1 ? col.sizes.length : firstInside) - 1;
    if (drop > 0) col.sizes.splice(0, drop);
  }
}

function text(x, y, content, cls, anchor = "start") {
  const el = svg("text", { x, y, class: cls, "text-anchor": anchor });
  el.textContent = content;
  return el;
}

/**
 * Where a lane's line stops: where the instance ended; while it runs, now if the lab feed would
 * report its end, else the last time this page saw it (plain Spin never says).
 */
function laneEnd(lane, now) {
  return lane.end ?? (labLive ? now : lane.lastSeen);
}

function drawLane(lane, cy, x, now, from) {
  const colour = colourOf(lane.component, lane.serverId);
  const g = svg("g", { class: "lane", "data-component": lane.component });
  if (lane.labId) g.dataset.labId = lane.labId;
  if (lane.serverId) g.dataset.serverId = lane.serverId;
  const number = lane.labId && `#${lane.labId.split("#").pop()}`;
  const name = [number, lane.serverId].filter(Boolean).join(" ");
  g.append(svg("circle", { cx: 8, cy, r: 5, fill: colour }));
  g.append(text(18, cy + 4, name || "starting", "lane-label"));
  const end = laneEnd(lane, now);
  const x0 = x(lane.start);
  g.append(svg("line", { x1: x0, x2: x(end), y1: cy, y2: cy, stroke: colour, class: "lane-line" }));
  if (lane.start >= from) {
    const tick = { x1: x0, x2: x0, y1: cy - 6, y2: cy + 6, stroke: colour, "stroke-width": 2 };
    g.append(svg("line", tick, "instance started"));
  }
  for (const m of lane.marks) {
    const mx = x(m.at);
    if (m.kind === "request") {
      const look = m.failed ? { fill: "#fff", class: "failed" } : { fill: colour };
      g.append(svg("circle", { cx: mx, cy, r: 3.5, ...look }, m.label));
    } else if (m.kind === "crash") {
      const cross = `M${mx - 5} ${cy - 5}l10 10m0 -10l-10 10`;
      g.append(svg("path", { d: cross, class: "crash" }, `crashed (${m.label})`));
    } else {
      const label = m.kind === "slot" ? m.label : `recycled: ${m.label}`;
      g.append(svg("path", { d: `M${mx} ${cy - 6}l6 6l-6 6l-6 -6z`, class: m.kind }, label));
    }
  }
  return g;
}

/** Items in this page's cart over time: a step line, since the count changes per request. */
function drawSizes(col, top, x, now, from) {
  const g = svg("g", { class: "sizes" });
  const points = col.sizes.filter((p) => p.at >= from);
  const before = col.sizes.findLast((p) => p.at < from);
  if (before) points.unshift({ at: from, count: before.count });
  const max = Math.max(4, ...points.map((p) => p.count));
  const y = (count) => top + LAYOUT.sizes - 4 - (count / max) * (LAYOUT.sizes - 8);
  g.append(text(4, top + LAYOUT.sizes / 2 + 4, "items in your cart", "lane-label"));
  g.append(svg("line", { x1: x(from), x2: x(now), y1: y(0), y2: y(0), class: "baseline" }));
  if (points.length > 0) {
    let d = `M${x(points[0].at)} ${y(points[0].count)}`;
    for (const p of points.slice(1)) d += `H${x(p.at)}V${y(p.count)}`;
    d += `H${x(now)}`;
    g.append(svg("path", { d, class: "size-line" }));
    const last = points.at(-1).count;
    g.append(text(x(now) - 2, y(last) - 3, String(last), "size-label", "end"));
  }
  return g;
}

function summary() {
  return [...columns.values()]
    .map((col) => {
      const mine = lanes.filter((l) => l.component === col.component);
      const ended = mine.filter((l) => l.end !== null).length;
      return `${col.component}: ${mine.length} instances seen, ${ended} ended`;
    })
    .join("; ");
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
