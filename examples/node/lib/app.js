'use strict';
// The Express app both examples serve; only `call` (how one RL.* command reaches
// Redis) differs between node-redis and ioredis.
const express = require('express');
const { rateLimit, tokenBucket, sliding, fixed } = require('./ratelimit');

/**
 * @param {(args: string[], firstKey: string) => Promise<unknown>} call
 * @param {{failure?: 'closed'|'open', trustedProxies?: string[], timeoutMs?: number}} [options]
 */
function buildApp(call, options = {}) {
  const common = {
    call,
    failure: options.failure ?? 'closed',
    trustedProxies: options.trustedProxies ?? [],
    timeoutMs: options.timeoutMs ?? 250,
    ...(options.log ? { log: options.log } : {}),
  };
  const app = express();
  app.set('trust proxy', false); // the middleware resolves the client IP itself
  app.disable('x-powered-by');

  // Per IP: a bucket of 5 that refills 1 token per second (RL.TOKENBUCKET).
  // `?cost=n` takes n tokens: a cost above 5 can never fit (retry_after_ms = -1).
  const api = rateLimit({
    ...common,
    rule: 'api',
    limits: [tokenBucket('burst', 5, 1, 1000)],
    cost: (req) => {
      const n = Number.parseInt(String(req.query.cost ?? '1'), 10);
      return Number.isInteger(n) && n >= 0 ? n : 1;
    },
  });
  app.get('/api/hello', api, (req, res) => res.json({ hello: 'world' }));

  // Per IP, two windows decided together (RL.ALL): 3 per minute and 10 per hour.
  const login = rateLimit({
    ...common,
    rule: 'login',
    limits: [sliding('per-minute', 3, 60_000), fixed('per-hour', 10, 3_600_000)],
  });
  app.post('/login', login, (req, res) => res.json({ ok: true }));

  app.get('/health', (req, res) => res.json({ ok: true })); // not limited
  return app;
}

/** Options from the environment, for running an example by hand. */
function envOptions() {
  return {
    failure: process.env.REDLIMIT_FAILURE === 'open' ? 'open' : 'closed',
    trustedProxies: (process.env.TRUSTED_PROXIES ?? '').split(',').map((s) => s.trim()).filter(Boolean),
  };
}

module.exports = { buildApp, envOptions };
