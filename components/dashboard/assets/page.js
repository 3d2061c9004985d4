// The page's shared state and vocabulary, below the other modules: the carts, each
// instance's colour, the columns, and whether the lab's live feed is connected. Every
// other module imports from here; this one imports nothing.

export const CARTS = [
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
// ---- instance colours ---------------------------------------------------------------------

/** Dark enough for white text, far apart from each other, and no red: red means a crash. */
const PALETTE = ["#1d4ed8", "#c2410c", "#15803d", "#7e22ce", "#be185d", "#0e7490", "#713f12"];
const coloured = new Map(); // component -> Map(id -> colour), in the order first seen

/**
 * One colour per instance, the same everywhere on the page. A hash of the id picks it; when
 * one of the component's recent instances already wears that colour, the next free one is
 * taken instead, so lanes side by side never look alike (random ids alone often collide).
 */
export function colourOf(component, id) {
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

/** Per cart: its elements, the cart it last saw, and a queue so that clicks run in order. */
export const columns = new Map();

export function plural(n, noun = "item") {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** Whether /_lab/events is connected: it then reports every request, ours included. */
export const labFeed = { live: false };
