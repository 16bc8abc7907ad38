'use strict';
// Express middleware calling the redlimit module's RL.* commands directly, whatever
// the Redis client: each app passes a `call(args, firstKey)` that sends one command
// whose arguments are all strings and resolves to the raw reply.
//
// Same semantics as the Rust middleware (docs/middleware.md) where they overlap:
// per-IP keys `rl:{<rule>:ip:<ip>}:<limit>` (IPv6 counted per /64), draft-11
// `RateLimit-Policy` / `RateLimit` headers on every answer of a limited route, 429 with
// `Retry-After` (seconds, rounded up) and an RFC 9457 problem body, and a failure policy
// (`closed` by default: 503, never a silent admit) when Redis or the module cannot decide.

const net = require('node:net');

const QUOTA_TYPE = 'https://iana.org/assignments/http-problem-types#quota-exceeded';
const UNAVAILABLE_TYPE = 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity';

const ceilSeconds = (ms) => Math.ceil(ms / 1000);

// ---------------------------------------------------------------------------
// Limits: one RL.* policy each, written as the module's own arguments.
// ---------------------------------------------------------------------------

/** @typedef {{name: string, algorithm: 'TOKENBUCKET'|'SLIDING'|'FIXED', args: number[]}} Limit */

function tokenBucket(name, capacity, refillTokens, refillMs) {
  return { name, algorithm: 'TOKENBUCKET', args: [capacity, refillTokens, refillMs] };
}
function sliding(name, limit, windowMs) {
  return { name, algorithm: 'SLIDING', args: [limit, windowMs] };
}
function fixed(name, limit, windowMs) {
  return { name, algorithm: 'FIXED', args: [limit, windowMs] };
}

/** `q` of RateLimit-Policy: the quota. */
function quota(limit) {
  return limit.args[0];
}

/** `w` of RateLimit-Policy, seconds rounded up, at least 1: the window, or for a token
 * bucket the time to refill from empty (capacity * refill_ms / refill_tokens). */
function windowSeconds(limit) {
  const [a, b, c] = limit.args;
  const ms = limit.algorithm === 'TOKENBUCKET' ? Math.ceil((a * c) / b) : b;
  return Math.max(1, ceilSeconds(ms));
}

/**
 * The command for one request: a single limit is its own command
 * (`RL.TOKENBUCKET key capacity refill_tokens refill_ms COST n`), several are one
 * all-or-nothing `RL.ALL numkeys key... policy... COST n`. Every argument a string:
 * node-redis `sendCommand` throws a TypeError on a number.
 */
function buildCommand(keys, limits, cost) {
  const costArgs = ['COST', String(cost)];
  if (limits.length === 1) {
    return ['RL.' + limits[0].algorithm, keys[0], ...limits[0].args.map(String), ...costArgs];
  }
  const policies = limits.flatMap((l) => [l.algorithm, ...l.args.map(String)]);
  return ['RL.ALL', String(keys.length), ...keys, ...policies, ...costArgs];
}

/** A decision: `[allowed, limit, remaining, retry_after_ms, reset_after_ms]`, five
 * integers under RESP2 and RESP3 alike. Anything else is an error, not an admit. */
function parseDecision(reply) {
  if (!Array.isArray(reply) || reply.length !== 5 || !reply.every(Number.isInteger)) {
    throw new Error('unexpected RL.* decision reply: ' + JSON.stringify(reply));
  }
  const [allowed, limit, remaining, retryAfterMs, resetAfterMs] = reply;
  return { allowed: allowed === 1, limit, remaining, retryAfterMs, resetAfterMs };
}

/** The reply of `buildCommand`: the overall decision and one per limit. */
function parseReply(reply, count, cost = 1) {
  if (count === 1) {
    const d = parseDecision(reply);
    return { allowed: d.allowed, decisions: [d] };
  }
  if (!Array.isArray(reply) || reply.length !== count + 1 || !Number.isInteger(reply[0])) {
    throw new Error('unexpected RL.ALL reply: ' + JSON.stringify(reply));
  }
  const allowed = reply[0] === 1;
  const decisions = reply.slice(1).map(parseDecision);
  if (!allowed) {
    // Each decision is "as if decided alone": a limit that would allow reports what it
    // would have left after counting this request, but nothing was counted anywhere.
    // Report what it has (as the Rust middleware does).
    for (const d of decisions.filter((d) => d.allowed)) d.remaining = Math.min(d.remaining + cost, d.limit);
  }
  return { allowed, decisions };
}

// ---------------------------------------------------------------------------
// Who is asking: the peer, or from a trusted proxy the rightmost untrusted
// X-Forwarded-For entry; IPv4-mapped IPv6 as IPv4; IPv6 per /64.
// ---------------------------------------------------------------------------

function normalizeIp(ip) {
  if (typeof ip !== 'string') return null;
  ip = ip.trim();
  if (ip.startsWith('[') && ip.includes(']')) ip = ip.slice(1, ip.indexOf(']'));
  const zone = ip.indexOf('%');
  if (zone >= 0) ip = ip.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) ip = mapped[1];
  return net.isIP(ip) ? ip : null;
}

/** Eight 16-bit groups of an IPv6 address. */
function ipv6Groups(ip) {
  let [head, tail] = ip.includes('::') ? ip.split('::') : [ip, null];
  const parse = (s) => (s ? s.split(':') : []);
  let h = parse(head);
  let t = parse(tail);
  const last = (t.length ? t : h).at(-1);
  if (last && last.includes('.')) {
    // embedded IPv4 (::ffff:1.2.3.4 handled earlier; e.g. 64:ff9b::1.2.3.4)
    const o = last.split('.').map(Number);
    const extra = [((o[0] << 8) | o[1]).toString(16), ((o[2] << 8) | o[3]).toString(16)];
    if (t.length) t = [...t.slice(0, -1), ...extra];
    else h = [...h.slice(0, -1), ...extra];
  }
  const fill = tail === null ? [] : Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

/** The identity of a client address: IPv4 as is, IPv6 as its /prefix network. */
function ipIdentity(ip, ipv6Prefix = 64) {
  if (net.isIPv4(ip)) return ip;
  const groups = ipv6Groups(ip);
  if (ipv6Prefix >= 128) return groups.map((g) => g.toString(16)).join(':');
  const kept = groups.map((g, i) => {
    const bits = Math.min(16, Math.max(0, ipv6Prefix - i * 16));
    return bits === 0 ? 0 : g & (0xffff << (16 - bits)) & 0xffff;
  });
  // Compress the trailing zero groups: 2001:db8:aa:bb::/64
  let end = 8;
  while (end > 0 && kept[end - 1] === 0) end--;
  const head = kept.slice(0, end).map((g) => g.toString(16)).join(':');
  return (end === 8 ? head : head + '::') + '/' + ipv6Prefix;
}

/**
 * The client address of a request. `trustedProxies` lists exact addresses (keep it
 * to your load balancers); only a request whose peer is one of them has its
 * X-Forwarded-For read, from the nearest hop back, stopping at the first entry that is
 * not itself a trusted proxy (or cannot be parsed: then the last trusted hop counts).
 */
function clientIp(req, trustedProxies = []) {
  const trusted = new Set(trustedProxies.map(normalizeIp).filter(Boolean));
  let ip = normalizeIp(req.socket.remoteAddress);
  if (!ip || !trusted.has(ip)) return ip;
  const header = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(header) ? header.join(',') : header || '').split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalizeIp(hops[i]);
    if (!hop) break;
    ip = hop;
    if (!trusted.has(hop)) break;
  }
  return ip;
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/** RateLimit-Policy: `"burst";q=5;w=5, "daily";q=10000;w=86400` */
function policyHeader(limits) {
  return limits.map((l) => `"${l.name}";q=${quota(l)};w=${windowSeconds(l)}`).join(', ');
}

/** RateLimit: `"burst";r=4;t=1, ...`. `t`: for a refusal with nothing left and a wait,
 * the seconds until it can be retried; otherwise until the limit is full again. */
function rateLimitHeader(limits, decisions) {
  return limits
    .map((l, i) => {
      const d = decisions[i];
      const waiting = !d.allowed && d.remaining === 0 && d.retryAfterMs > 0;
      const t = ceilSeconds(waiting ? d.retryAfterMs : d.resetAfterMs);
      return `"${l.name}";r=${d.remaining};t=${t}`;
    })
    .join(', ');
}

function sendProblem(res, status, body) {
  res.status(status).type('application/problem+json').send(JSON.stringify(body));
}

// ---------------------------------------------------------------------------
// The middleware
// ---------------------------------------------------------------------------

function classify(err) {
  const msg = String((err && err.message) || err);
  if (/unknown command/i.test(msg)) return 'module_not_loaded';
  if (/timed out/i.test(msg)) return 'timeout';
  return 'unavailable';
}

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`redlimit: no answer within ${ms} ms (timed out)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * @param {object} o
 * @param {(args: string[], firstKey: string) => Promise<unknown>} o.call sends one command
 * @param {string} o.rule the rule's name (part of every key)
 * @param {Limit[]} o.limits one or more limits, decided together (RL.ALL) if several
 * @param {'closed'|'open'} [o.failure] what to answer when Redis or the module cannot
 *   decide: `closed` (default) refuses with 503, `open` lets the request through
 * @param {number} [o.timeoutMs] longest wait for a decision (default 250)
 * @param {string[]} [o.trustedProxies] peers whose X-Forwarded-For is read
 * @param {number} [o.ipv6Prefix] IPv6 clients count per this prefix (default 64)
 * @param {(req) => number} [o.cost] units a request takes (default 1)
 * @param {string} [o.keyPrefix] default `rl:`
 * @param {(msg: string) => void} [o.log]
 */
function rateLimit(o) {
  const {
    call,
    rule,
    limits,
    failure = 'closed',
    timeoutMs = 250,
    trustedProxies = [],
    ipv6Prefix = 64,
    cost = () => 1,
    keyPrefix = 'rl:',
    log = (msg) => console.warn(msg),
  } = o;
  if (!['closed', 'open'].includes(failure)) throw new Error(`failure must be 'closed' or 'open', not ${failure}`);
  if (!limits.length || limits.length > 32) throw new Error('between 1 and 32 limits per rule');
  const policy = policyHeader(limits);
  let failing = null; // the kind of the current outage, logged once when it starts

  return async function redlimit(req, res, next) {
    const ip = clientIp(req, trustedProxies);
    const who = ip ? `ip:${ipIdentity(ip, ipv6Prefix)}` : 'ip:unknown';
    // One hash tag per caller and rule: every key of an RL.ALL lands in one slot.
    const keys = limits.map((l) => `${keyPrefix}{${rule}:${who}}:${l.name}`);
    const n = cost(req);
    let result;
    try {
      const reply = await withTimeout(call(buildCommand(keys, limits, n), keys[0]), timeoutMs);
      result = parseReply(reply, limits.length, n);
    } catch (err) {
      const kind = classify(err);
      if (failing !== kind) {
        failing = kind;
        log(`redlimit: rule ${rule}: ${kind}: ${err && err.message}; failure policy ${failure} answers`);
      }
      if (failure === 'open') return next();
      res.set('Retry-After', '1');
      return sendProblem(res, 503, {
        detail: 'Limits cannot be checked now; retry in 1 s.',
        'retry-after': 1,
        status: 503,
        title: 'Request cannot be satisfied as the rate limits cannot be checked now',
        type: UNAVAILABLE_TYPE,
      });
    }
    if (failing) {
      log(`redlimit: rule ${rule}: the module answers again`);
      failing = null;
    }

    res.set('RateLimit-Policy', policy);
    res.set('RateLimit', rateLimitHeader(limits, result.decisions));
    if (result.allowed) return next();

    const violated = result.decisions.map((d, i) => [d, limits[i]]).filter(([d]) => !d.allowed);
    const never = violated.some(([d]) => d.retryAfterMs < 0);
    const retryAfter = never ? null : Math.max(1, ...violated.map(([d]) => ceilSeconds(d.retryAfterMs)));
    if (retryAfter !== null) res.set('Retry-After', String(retryAfter));
    return sendProblem(res, 429, {
      detail: never ? 'This request is larger than the limit allows.' : `Too many requests; retry in ${retryAfter} s.`,
      'retry-after': retryAfter,
      status: 429,
      title: 'Request cannot be satisfied as assigned quota has been exceeded',
      type: QUOTA_TYPE,
      'violated-policies': violated.map(([, l]) => l.name),
    });
  };
}

module.exports = {
  rateLimit,
  tokenBucket,
  sliding,
  fixed,
  buildCommand,
  parseReply,
  clientIp,
  ipIdentity,
  normalizeIp,
  policyHeader,
  rateLimitHeader,
};
