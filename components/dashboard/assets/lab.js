// cartlab dashboard: the lab host's /_lab/ API (`cartlab up` only): its controls, and the
// lanes fed from its instance snapshots and event feed (or polling when the feed is blocked).

import { CARTS, labFeed, plural } from "./page.js";
import { endLane, laneFor, lanes, mark, render } from "./timeline.js";

const POLL_MS = 2_000;

// ---- the lab API (cartlab up only) -----------------------------------------------------------

function isCart(component) {
  return CARTS.some((cart) => cart.component === component);
}

const lab = {
  controls: document.getElementById("lab-controls"),
  note: document.getElementById("lab-note"),
  mode: document.getElementById("lab-mode"),
  status: document.getElementById("lab-status"),
  source: document.getElementById("timeline-source"),
  polling: null,
};

export async function detectLab() {
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
    labFeed.live = true;
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
    labFeed.live = false;
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

export async function recycle(mode) {
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
  if (result && !labFeed.live) {
    const now = Date.now();
    for (const lane of lanes) {
      if (result.recycled.includes(lane.labId)) endLane(lane, now, "recycled");
    }
    render();
  }
}
