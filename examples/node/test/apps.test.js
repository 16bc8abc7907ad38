'use strict';
// Runs both example apps (node-redis over RESP2 and RESP3, ioredis over RESP2) against
// Redis 7.0, Redis 8.2 and Valkey 9.1 with the module loaded, checking real 429s and
// header values, and against the same servers without the module (503, never an admit).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { createClient } = require('redis');
const { SERVERS, SKIP_MISSING, startServer } = require('../support/servers');
const { createNodeRedisApp } = require('../node-redis-app');
const { createIoredisApp } = require('../ioredis-app');

const VARIANTS = [
  { name: 'node-redis RESP2', create: createNodeRedisApp, resp: 2 },
  { name: 'node-redis RESP3', create: createNodeRedisApp, resp: 3 },
  { name: 'ioredis RESP2', create: createIoredisApp, resp: 2 },
];

const PROBLEM_429 = {
  title: 'Request cannot be satisfied as assigned quota has been exceeded',
  type: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
  status: 429,
};
const PROBLEM_503 = {
  detail: 'Limits cannot be checked now; retry in 1 s.',
  'retry-after': 1,
  status: 503,
  title: 'Request cannot be satisfied as the rate limits cannot be checked now',
  type: 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
};

async function listen(app) {
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return { base: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/** One request as client `ip` (the test is a trusted proxy: X-Forwarded-For). */
async function request(base, path, ip, method = 'GET') {
  const res = await fetch(base + path, { method, headers: { 'x-forwarded-for': `203.0.113.250, ${ip}` } });
  const text = await res.text();
  return {
    status: res.status,
    policy: res.headers.get('ratelimit-policy'),
    ratelimit: res.headers.get('ratelimit'),
    retryAfter: res.headers.get('retry-after'),
    type: res.headers.get('content-type'),
    body: text.startsWith('{') ? JSON.parse(text) : text,
  };
}

for (const server of SERVERS) {
  const missing = !fs.existsSync(server.bin);
  describe(server.name, { skip: missing && SKIP_MISSING ? `${server.bin} missing` : false }, () => {
    let withModule;
    let bare;
    let admin; // a plain client for CONFIG SET / EXISTS

    before(async () => {
      assert.ok(!missing, `${server.bin} is missing (REDLIMIT_SKIP_MISSING_SERVERS=1 skips it)`);
      [withModule, bare] = await Promise.all([
        startServer(server.bin, { withModule: true }),
        startServer(server.bin, { withModule: false }),
      ]);
      admin = createClient({ url: `redis://127.0.0.1:${withModule.port}` });
      await admin.connect();
    });
    after(async () => {
      await admin?.close();
      await Promise.all([withModule?.stop(), bare?.stop()]);
    });

    /** Moves the module's clock forward (redlimit.clock-offset-ms): no sleeping. */
    async function advance(ms) {
      const cur = await admin.sendCommand(['CONFIG', 'GET', 'redlimit.clock-offset-ms']);
      await admin.sendCommand(['CONFIG', 'SET', 'redlimit.clock-offset-ms', String(Number(cur[1]) + ms)]);
    }

    VARIANTS.forEach((variant, v) => {
      describe(variant.name, () => {
        let app;
        let http;
        before(async () => {
          app = await variant.create({
            redisUrl: `redis://127.0.0.1:${withModule.port}`,
            resp: variant.resp,
            trustedProxies: ['127.0.0.1', '203.0.113.250'],
          });
          http = await listen(app.app);
        });
        after(async () => {
          await http?.close();
          await app?.close();
        });

        it('RL.ALL on /login: two windows, the 4th attempt a 429 naming per-minute', async () => {
          const ip = `198.51.100.${10 + v}`;
          for (let k = 1; k <= 3; k++) {
            const r = await request(http.base, '/login', ip, 'POST');
            assert.equal(r.status, 200);
            assert.equal(r.policy, '"per-minute";q=3;w=60, "per-hour";q=10;w=3600');
            assert.match(r.ratelimit, new RegExp(`^"per-minute";r=${3 - k};t=60, "per-hour";r=${10 - k};t=\\d+$`));
          }
          const r = await request(http.base, '/login', ip, 'POST');
          assert.equal(r.status, 429);
          assert.equal(r.retryAfter, '60'); // 60 000 ms minus a few, rounded up
          assert.match(r.ratelimit, /^"per-minute";r=0;t=60, "per-hour";r=7;t=\d+$/);
          assert.equal(r.type, 'application/problem+json; charset=utf-8');
          assert.deepEqual(r.body, {
            ...PROBLEM_429,
            detail: 'Too many requests; retry in 60 s.',
            'retry-after': 60,
            'violated-policies': ['per-minute'],
          });
        });

        it('RL.TOKENBUCKET on /api: 5 then 429 with Retry-After 1, headers exact', async () => {
          const ip = `198.51.100.${20 + v}`;
          for (let k = 1; k <= 5; k++) {
            const r = await request(http.base, '/api/hello', ip);
            assert.equal(r.status, 200, `request ${k}`);
            assert.equal(r.policy, '"burst";q=5;w=5');
            // r: tokens left; t: seconds until the bucket is full again (k tokens, 1/s)
            assert.equal(r.ratelimit, `"burst";r=${5 - k};t=${k}`);
            assert.equal(r.retryAfter, null);
            assert.deepEqual(r.body, { hello: 'world' });
          }
          const r = await request(http.base, '/api/hello', ip);
          assert.equal(r.status, 429);
          assert.equal(r.retryAfter, '1'); // < 1000 ms until a token, rounded up
          assert.equal(r.policy, '"burst";q=5;w=5');
          assert.equal(r.ratelimit, '"burst";r=0;t=1'); // refused: t = time until retry
          assert.deepEqual(r.body, {
            ...PROBLEM_429,
            detail: 'Too many requests; retry in 1 s.',
            'retry-after': 1,
            'violated-policies': ['burst'],
          });
          // A cost above the capacity can never fit: no Retry-After, retry-after null.
          const big = await request(http.base, '/api/hello?cost=6', ip);
          assert.equal(big.status, 429);
          assert.equal(big.retryAfter, null);
          assert.equal(big.body['retry-after'], null);
          assert.equal(big.body.detail, 'This request is larger than the limit allows.');
          // Waiting Retry-After is enough (test clock: +1 s, no sleeping).
          await advance(1000);
          const again = await request(http.base, '/api/hello', ip);
          assert.equal(again.status, 200);
          assert.match(again.ratelimit, /^"burst";r=0;t=5$/);
        });

        it('IPv6 clients count per /64; X-Forwarded-For read only from trusted proxies', async () => {
          const net = `2001:db8:${v + 1}:7`;
          for (let k = 1; k <= 5; k++) {
            const r = await request(http.base, '/api/hello', `${net}::${k}`);
            assert.equal(r.status, 200);
            assert.equal(r.ratelimit, `"burst";r=${5 - k};t=${k}`);
          }
          assert.equal((await request(http.base, '/api/hello', `${net}:ffff::1`)).status, 429);
          const other = await request(http.base, '/api/hello', `2001:db8:${v + 1}:8::1`);
          assert.equal(other.status, 200);
          assert.equal(other.ratelimit, '"burst";r=4;t=1');
          assert.equal(await admin.exists(`rl:{api:ip:${net}::/64}:burst`), 1);
          // The rightmost untrusted hop counts: a client-written first entry is ignored.
          assert.equal(await admin.exists(`rl:{api:ip:203.0.113.250}:burst`), 0);
        });
      });
    });

    describe('module missing', () => {
      for (const variant of VARIANTS) {
        it(`${variant.name}: failure closed answers 503, open admits without headers`, async () => {
          for (const failure of ['closed', 'open']) {
            const app = await variant.create({
              redisUrl: `redis://127.0.0.1:${bare.port}`,
              resp: variant.resp,
              failure,
              log: () => {},
            });
            const http = await listen(app.app);
            try {
              for (const [path, method] of [['/api/hello', 'GET'], ['/login', 'POST'], ['/api/hello', 'GET']]) {
                const r = await request(http.base, path, '192.0.2.1', method);
                assert.equal(r.ratelimit, null);
                assert.equal(r.policy, null);
                if (failure === 'closed') {
                  assert.equal(r.status, 503);
                  assert.equal(r.retryAfter, '1');
                  assert.equal(r.type, 'application/problem+json; charset=utf-8');
                  assert.deepEqual(r.body, PROBLEM_503);
                } else {
                  assert.equal(r.status, 200);
                }
              }
            } finally {
              await http.close();
              await app.close();
            }
          }
        });
      }
    });
  });
}
