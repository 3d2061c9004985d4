'use strict';
// The seed lesson's stack (express + express-session + connect-redis + node-redis v4)
// serving the two cart routes that cartlab's Rust components serve, so bench/ can put
// the same load on both. See README.md beside this file.
//
// Nothing is logged per request: stdout carries one line (`Serving http://127.0.0.1:<port>`)
// and stderr only Redis connection changes and unexpected errors.

const crypto = require('node:crypto');
const express = require('express');
const session = require('express-session');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');

function intFromEnv(name, fallback, min, max) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    process.stderr.write(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}\n`);
    process.exit(2);
  }
  return value;
}

const PORT = intFromEnv('PORT', 0, 0, 65535);
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const SESSION_IDLE_SECS = intFromEnv('SESSION_IDLE_SECS', 1800, 1, 365 * 24 * 3600);
// A request whose session read or write has not come back by then (a stalled Redis, not a
// refused one: that fails at once) is answered 503 rather than left hanging.
const STORE_DEADLINE_MS = 2000;

const MAX_ITEM_CHARS = 200;
const MAX_PRICE = 1e6;
const MAX_QUANTITY = 99;
const MAX_LINES = 100;

// ---- Redis -------------------------------------------------------------------------------

let lastRedisError = '';
const redisClient = createClient({
  url: REDIS_URL,
  // Fail commands at once while disconnected instead of queueing them until Redis is back:
  // a request that needs the session then gets a prompt 503.
  disableOfflineQueue: true,
  socket: {
    connectTimeout: 500,
    // Keep retrying forever, backing off to at most one attempt a second.
    reconnectStrategy: (retries) => Math.min(50 * (retries + 1), 1000),
  },
});
redisClient.on('error', (err) => {
  // Without a listener node-redis would throw and end the process. Repeats of the same
  // error during a reconnect loop are logged once.
  const text = String(err && err.message ? err.message : err);
  if (text !== lastRedisError) {
    lastRedisError = text;
    process.stderr.write(`redis: ${text}\n`);
  }
});
redisClient.on('ready', () => {
  if (lastRedisError) process.stderr.write('redis: connected again\n');
  lastRedisError = '';
});

// ---- Errors ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function sendError(res, status, code, message) {
  if (res.headersSent) return;
  res.status(status).json({ error: { code, message } });
}

function storeUnavailable(res) {
  sendError(res, 503, 'store_unavailable', 'the session store is unavailable');
}

// ---- Cart --------------------------------------------------------------------------------

function shortId(sessionID) {
  return crypto.createHash('sha256').update(sessionID).digest('hex').slice(0, 8);
}

function cartBody(req) {
  const cart = req.session && Array.isArray(req.session.cart) ? req.session.cart : null;
  if (!cart) return { sessionId: null, cart: [], total: 0 };
  let cents = 0;
  for (const line of cart) cents += Math.round(line.price * 100) * line.quantity;
  return { sessionId: shortId(req.sessionID), cart, total: cents / 100 };
}

function parseAdd(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiError(400, 'invalid_item', 'the body must be a JSON object {"item": string, "price": number, "quantity"?: integer}');
  }
  const { item, price } = body;
  if (typeof item !== 'string' || item.trim() === '') {
    throw new ApiError(400, 'invalid_item', 'item must be a non-empty string');
  }
  if (item.length > MAX_ITEM_CHARS) {
    throw new ApiError(400, 'invalid_item', `item must be at most ${MAX_ITEM_CHARS} characters`);
  }
  if (typeof price !== 'number' || !Number.isFinite(price) || price < 0 || price > MAX_PRICE) {
    throw new ApiError(400, 'invalid_item', `price must be a number of dollars from 0 to ${MAX_PRICE}`);
  }
  const quantity = body.quantity === undefined ? 1 : body.quantity;
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > MAX_QUANTITY) {
    throw new ApiError(400, 'invalid_item', `quantity must be a whole number from 1 to ${MAX_QUANTITY}`);
  }
  return { item, price: Math.round(price * 100) / 100, quantity };
}

function addLine(cart, add) {
  const line = cart.find((l) => l.item === add.item && l.price === add.price);
  if (line) {
    if (line.quantity + add.quantity > MAX_QUANTITY) {
      throw new ApiError(400, 'invalid_item', `at most ${MAX_QUANTITY} of one item (the cart has ${line.quantity})`);
    }
    line.quantity += add.quantity;
    return;
  }
  if (cart.length >= MAX_LINES) {
    throw new ApiError(400, 'invalid_item', `the cart holds at most ${MAX_LINES} lines`);
  }
  cart.push(add);
}

// ---- App ---------------------------------------------------------------------------------

const app = express();
app.disable('x-powered-by');

// As the seed lesson writes it. With the default `rolling: false`, express-session calls the
// store's `touch` (an EXPIRE) on unmodified sessions: the stack's own sliding expiry.
const sessionMiddleware = session({
  store: new RedisStore({ client: redisClient }),
  secret: process.env.SESSION_SECRET || 'stateless-session-secret',
  resave: false,
  saveUninitialized: false,
  cookie: { maxAge: SESSION_IDLE_SECS * 1000, httpOnly: true, sameSite: 'lax' },
});

// The session middleware, with a deadline, and with its store errors answered 503 here.
function withSession(req, res, next) {
  const timer = setTimeout(() => {
    req.session = null; // no Set-Cookie, no save at the end
    storeUnavailable(res);
  }, STORE_DEADLINE_MS);
  res.once('finish', () => clearTimeout(timer));
  res.once('close', () => clearTimeout(timer));
  sessionMiddleware(req, res, (err) => {
    if (res.headersSent) return; // answered by the deadline meanwhile
    if (err) {
      clearTimeout(timer);
      req.session = null;
      return storeUnavailable(res);
    }
    next();
  });
}

const json = express.json({ limit: '16kb' });

app.post('/cart/add', (req, res, next) => {
  if (!req.is('application/json')) {
    return sendError(res, 415, 'unsupported_media_type', 'the body must be JSON (content-type: application/json)');
  }
  next();
}, json, (req, res, next) => {
  // Validate before touching the store, so a bad body costs no Redis round trip.
  try {
    res.locals.add = parseAdd(req.body);
  } catch (err) {
    return next(err);
  }
  next();
}, withSession, (req, res, next) => {
  const cart = Array.isArray(req.session.cart) ? req.session.cart.map((l) => ({ ...l })) : [];
  try {
    addLine(cart, res.locals.add);
  } catch (err) {
    return next(err);
  }
  req.session.cart = cart;
  // Save before answering, so a failed write is a 503 and not a 200 for a cart that was lost
  // (express-session's own save at the end would answer first and report the error after).
  req.session.save((err) => {
    if (res.headersSent) return;
    if (err) {
      req.session = null;
      return storeUnavailable(res);
    }
    res.json(cartBody(req));
  });
});

// Reads only: an unknown or missing cookie leaves req.session unmodified, so with
// saveUninitialized false no session is stored and no cookie is set.
app.get('/cart', withSession, (req, res) => {
  res.json(cartBody(req));
});

app.get('/health', async (req, res) => {
  try {
    await redisClient.ping();
    res.json({ status: 'ok' });
  } catch (err) {
    storeUnavailable(res);
  }
});

app.use((req, res) => {
  sendError(res, 404, 'not_found', `no route for ${req.method} ${req.path}`);
});

// eslint-disable-next-line no-unused-vars
app.use((err, req, res, next) => {
  if (res.headersSent) return;
  if (err instanceof ApiError) return sendError(res, err.status, err.code, err.message);
  if (err && err.type === 'entity.parse.failed') return sendError(res, 400, 'invalid_json', 'the body is not valid JSON');
  if (err && err.type === 'entity.too.large') return sendError(res, 413, 'payload_too_large', 'the body is larger than 16kb');
  if (err && typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
    return sendError(res, err.status, 'bad_request', err.message || 'bad request');
  }
  process.stderr.write(`error: ${err && err.stack ? err.stack : err}\n`);
  sendError(res, 500, 'internal_error', 'internal error');
});

// ---- Start and stop ----------------------------------------------------------------------

let server;

async function main() {
  // Wait a moment for the first connection so the first requests find Redis ready, but
  // serve anyway if it is down (requests that need it answer 503 until it is back).
  const connecting = redisClient.connect().catch((err) => {
    process.stderr.write(`redis: ${err && err.message ? err.message : err}\n`);
  });
  await Promise.race([connecting, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);

  server = app.listen(PORT, '127.0.0.1', () => {
    process.stdout.write(`Serving http://127.0.0.1:${server.address().port}\n`);
  });
  server.on('error', (err) => {
    process.stderr.write(`listen: ${err.message}\n`);
    process.exit(1);
  });
}

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 3000).unref();
  const closeRedis = () => {
    let done;
    try {
      done = redisClient.isReady ? redisClient.quit() : redisClient.disconnect();
    } catch (err) {
      done = null; // already closed
    }
    Promise.resolve(done).catch(() => {}).finally(() => process.exit(0));
  };
  if (!server) return closeRedis();
  server.close(closeRedis);
  // Idle keep-alive connections now; busy ones (a load generator's) after a grace period.
  server.closeIdleConnections();
  setTimeout(() => server.closeAllConnections(), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

main();
