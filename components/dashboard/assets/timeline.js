// cartlab dashboard: the timeline, one lane per instance of each cart component, in SVG.
// Fed by the columns' own answers (app.js) and, under `cartlab up`, by the lab API (lab.js).

import { colourOf, columns, labFeed } from "./page.js";

const WINDOW_MS = { min: 8_000, max: 60_000 }; // the timeline zooms out as history grows
const LANES_PER_COMPONENT = 6;

// ---- the timeline model ----------------------------------------------------------------------
//
// A lane is one instance of one component. It is known by its lab id ("stateful-cart#3", from
// the /_lab/ API) and/or its serverId (from the component's answers); whichever comes first
// creates it, and the other is attached when an event carries both.

export const lanes = [];

export function laneFor(component, { labId = null, serverId = null, slot = null }, at) {
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

export function mark(lane, at, kind, label, failed = false) {
  lane.marks.push({ at, kind, label, failed });
  lane.lastSeen = Math.max(lane.lastSeen, at);
}

export function endLane(lane, at, reason) {
  if (lane.end !== null) return;
  lane.end = at;
  mark(lane, at, reason === "trap" ? "crash" : "recycled", `${reason ?? "gone"}`);
}

/** Our own answers draw the timeline unless the lab feed already reports them. */
export function ownRequest(col, r) {
  if (labFeed.live || !r.serverId) return;
  const lane = laneFor(col.component, { serverId: r.serverId }, r.at);
  const label = `${r.method} /${col.key}${r.path} → ${r.status || "failed"} (${r.ms} ms)`;
  mark(lane, r.at, "request", label, !!r.error);
  render();
}

/** `crashed`: the instance that served this column last; the 500 itself comes from the runtime. */
export function ownCrash(col, r, crashed) {
  const serverId = r.serverId ?? crashed;
  if (labFeed.live || !serverId) return;
  endLane(laneFor(col.component, { serverId }, r.at), r.at + r.ms, "trap");
  render();
}

// ---- the timeline drawing ------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
export const plot = document.getElementById("timeline");
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
export function render() {
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
  return lane.end ?? (labFeed.live ? now : lane.lastSeen);
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
