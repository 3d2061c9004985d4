// End-to-end test of the cartlab dashboard in headless Chromium (the system's, no download).
//
//   node e2e/dashboard.mjs <base-url> <screenshot.png> [--block-events]
//
// Fills both carts through the page's buttons, crashes both serving instances, reads again and
// checks what the page shows: the stateful cart is lost (a new instance, an empty cart), the
// stateless one survives. With the lab API, recycles every instance through its button. Then
// runs "Run the whole journey" and checks the verdicts again.
// --block-events: the browser gets a 503 for /_lab/events, as from a proxy that does not pass
// Server-Sent Events, while the rest of /_lab/ works; the page must fall back to polling
// /_lab/instances, say so, and still show the lab's instances and work its controls.
// Needs only the cart API: the /_lab/ API is optional, as it is for the page. Exits non-zero
// with a message on any failure, and after 30 s at most; saves a full-page screenshot either way.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

const [base, screenshot, ...flags] = process.argv.slice(2);
const blockEvents = flags.includes("--block-events");
if (!base || !screenshot || flags.some((flag) => flag !== "--block-events")) {
  console.error("usage: node dashboard.mjs <base-url> <screenshot.png> [--block-events]");
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const BUDGET_MS = 30_000;
const STEP_MS = 10_000;

const budget = setTimeout(() => {
  console.error(`FAIL: the test did not finish within ${BUDGET_MS / 1000} s`);
  process.exit(1);
}, BUDGET_MS);

let browser;
let page;
let failed = false;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: STEP_MS,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  page.setDefaultTimeout(STEP_MS);
  await run();
  console.log("PASS: the stateful cart was lost with its instance, the stateless cart survived");
} catch (error) {
  failed = true;
  console.error(`FAIL: ${error.message}`);
} finally {
  if (page) {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
    console.log(`screenshot: ${screenshot}`);
  }
  await browser?.close().catch(() => {});
  clearTimeout(budget);
}
process.exit(failed ? 1 : 0);

async function run() {
  const origin = new URL(base).origin;
  const problems = [];
  page.on("pageerror", (error) => problems.push(`uncaught error in the page: ${error.message}`));
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith("data:") && new URL(url).origin !== origin) {
      problems.push(`the page loaded something from elsewhere: ${url}`);
    }
  });
  // Diagnostics only: a 404 from /_lab/ without the lab host is expected.
  page.on("console", (message) => {
    if (message.type() === "error") console.log(`console: ${message.text()}`);
  });

  let blockedFeeds = 0;
  if (blockEvents) {
    await page.route(
      (url) => url.pathname === "/_lab/events",
      (route) => {
        blockedFeeds += 1;
        return route.fulfill({ status: 503, contentType: "text/plain", body: "no event streams here" });
      },
    );
  }

  await page.goto(`${base}/`);
  // The page reads both carts on load; a fresh browser has no cookies, so both are empty.
  await settled("stateful", "stateless");
  await expectText("total-stateful", "$0.00");
  await expectText("total-stateless", "$0.00");

  await page.waitForFunction(
    () => !document.getElementById("lab-controls").hidden || !document.getElementById("lab-note").hidden,
  );
  const lab = await page.locator('[data-testid="lab-controls"]').isVisible();
  if (lab) {
    console.log("lab API: present (cartlab up)");
    // The caption says where the timeline's lab data comes from.
    const source = blockEvents
      ? "Lab instances polled every 2 s; requests from this page's own answers."
      : "Live from the lab host's event feed (every client's requests).";
    await expectText("timeline-source", source);
    console.log(`timeline: ${source}`);
  } else {
    await expectText("lab-note", "Lab controls need cartlab up.");
    console.log("lab API: absent, lab controls hidden");
  }

  for (const cart of ["stateful", "stateless"]) {
    // The first add by keyboard: the buttons are real buttons.
    await page.locator(`[data-testid="add-macbook-${cart}"]`).focus();
    await page.keyboard.press("Enter");
    await settled(cart);
    await expectText(`total-${cart}`, "$2,500.00");
    await click(`add-iphone-${cart}`);
    await settled(cart);
    await expectText(`total-${cart}`, "$3,700.00");
    await expectAttribute(`cart-${cart}`, "data-items", "2");
  }
  const before = {
    stateful: await text("instance-stateful"),
    stateless: await text("instance-stateless"),
  };
  console.log(`serving instances before the crash: ${JSON.stringify(before)}`);

  await click("crash-stateful");
  await click("crash-stateless");
  await settled("stateful", "stateless");
  await page.waitForTimeout(1_000);
  await click("read-stateful");
  await click("read-stateless");
  await settled("stateful", "stateless");

  const after = {
    stateful: await text("instance-stateful"),
    stateless: await text("instance-stateless"),
  };
  console.log(`serving instances after the crash: ${JSON.stringify(after)}`);
  for (const cart of ["stateful", "stateless"]) {
    if (!/^[0-9a-f]{8}$/.test(after[cart]) || after[cart] === before[cart]) {
      throw new Error(`${cart}: a new instance should serve after the crash (before ${before[cart]}, after ${after[cart]})`);
    }
  }
  await expectText("total-stateful", "$0.00");
  await expectAttribute("cart-stateful", "data-items", "0");
  await expectText("verdict-stateful", "CART LOST!");
  await expectText("total-stateless", "$3,700.00");
  await expectAttribute("cart-stateless", "data-items", "2");
  await expectText("verdict-stateless", "Cart survived!");

  // The timeline drew the stateful cart's two instances, and every tag of one instance has
  // one colour.
  const lanes = await page.locator('[data-testid="timeline"] g.lane[data-component="stateful-cart"]').count();
  if (lanes < 2) throw new Error(`the timeline should show 2+ stateful-cart instances, shows ${lanes}`);
  if (blockEvents && lab) await expectPolled(after.stateful);
  await expectNamedLanes();
  const colours = await page.$$eval('[data-testid^="requests-"] .chip', (chips) =>
    chips.map((chip) => [chip.textContent, getComputedStyle(chip).backgroundColor]),
  );
  const colourOf = new Map();
  for (const [id, colour] of colours) {
    if (colourOf.has(id) && colourOf.get(id) !== colour) throw new Error(`instance ${id} has two colours`);
    colourOf.set(id, colour);
  }

  if (lab) {
    await click("recycle-all");
    await waitUntil("lab-status", () => text("lab-status"), (s) => /^Recycled \d+ instances?\.$/.test(s));
    console.log(`lab: ${await text("lab-status")}`);
  }

  // The same story in one click.
  await click("journey");
  await page.waitForFunction(() => !document.getElementById("journey").hasAttribute("aria-disabled"));
  await expectText("verdict-stateful", "CART LOST!");
  await expectText("total-stateful", "$0.00");
  await expectText("verdict-stateless", "Cart survived!");
  await expectText("total-stateless", "$3,700.00");
  if (blockEvents && lab) await expectPolled(await text("instance-stateful"));
  await expectNamedLanes();

  if (blockEvents && blockedFeeds === 0) problems.push("the page never asked for /_lab/events");
  if (problems.length > 0) throw new Error(problems.join("\n"));
}

/**
 * Waits until the timeline shows the stateful instance `serverId` with its lab id. The page's
 * own answers carry only serverIds; with the event feed blocked, lab ids come only from
 * polling /_lab/instances: so this waits for a poll to reach the page.
 */
async function expectPolled(serverId) {
  const polled = `g.lane[data-component="stateful-cart"][data-server-id="${serverId}"][data-lab-id]`;
  const lane = page.locator(`[data-testid="timeline"] ${polled}`);
  await waitUntil(`the lane of ${serverId} with its lab id, from polling`, () => lane.count(), 1);
  console.log(`polled: ${await lane.getAttribute("data-lab-id")} is ${serverId}`);
}

/** Every lane names its instance, by lab id or serverId: a fleet's empty slots are no lanes. */
async function expectNamedLanes() {
  const nameless = page.locator('[data-testid="timeline"] g.lane:not([data-lab-id]):not([data-server-id])');
  const count = await nameless.count();
  if (count > 0) throw new Error(`the timeline shows ${count} lanes of no known instance`);
}

/** Waits until the carts' columns have no request in flight or queued. */
async function settled(...carts) {
  for (const cart of carts) {
    await page.waitForFunction(
      (key) => document.querySelector(`[data-cart="${key}"]`)?.getAttribute("aria-busy") === "false",
      cart,
    );
  }
}

async function click(testid) {
  await page.locator(`[data-testid="${testid}"]`).click();
}

async function text(testid) {
  return (await page.locator(`[data-testid="${testid}"]`).textContent())?.trim();
}

async function expectText(testid, expected) {
  await waitUntil(testid, () => text(testid), expected);
}

async function expectAttribute(testid, name, expected) {
  await waitUntil(`${testid} [${name}]`, () => page.locator(`[data-testid="${testid}"]`).getAttribute(name), expected);
}

/**
 * Polls `read` until it returns `expected`, or satisfies it when `expected` is a function
 * (the page updates asynchronously).
 */
async function waitUntil(what, read, expected) {
  const ok = typeof expected === "function" ? expected : (actual) => actual === expected;
  const deadline = Date.now() + STEP_MS;
  let actual;
  while (Date.now() < deadline) {
    actual = await read();
    if (ok(actual)) return;
    await page.waitForTimeout(50);
  }
  const wanted = typeof expected === "function" ? "a match" : JSON.stringify(expected);
  throw new Error(`${what}: expected ${wanted}, got ${JSON.stringify(actual)}`);
}
