'use strict';
// How node-redis and ioredis route RL.* in a Redis Cluster: a 3-primary cluster of
// Redis 7.0 with the module, counting MOVED replies (INFO errorstats) on every node.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const { createCluster } = require('redis');
const Redis = require('ioredis');
const { SERVERS, SKIP_MISSING, startServer } = require('../support/servers');
const { createNodeRedisApp } = require('../node-redis-app');
const { createIoredisApp } = require('../ioredis-app');

const server = SERVERS[0]; // redis-7.0, the oldest supported server
const CLI = process.env.REDIS_CLI || '/usr/bin/redis-cli';
const missing = !fs.existsSync(server.bin) || !fs.existsSync(CLI);
const N = 30; // requests per client, from N different IPs (spread over the slots)

describe(`cluster (${server.name}, 3 primaries)`, { skip: missing && SKIP_MISSING ? 'server or redis-cli missing' : false }, () => {
  let nodes = [];
  let addrs;
  const cli = (port, ...args) => execFileSync(CLI, ['-p', String(port), ...args], { encoding: 'utf8' });
  const moved = () =>
    nodes.reduce((sum, n) => sum + Number(/errorstat_MOVED:count=(\d+)/.exec(cli(n.port, 'INFO', 'errorstats'))?.[1] ?? 0), 0);

  before(async () => {
    assert.ok(!missing, `${server.bin} or ${CLI} missing (REDLIMIT_SKIP_MISSING_SERVERS=1 skips it)`);
    nodes = await Promise.all(
      [0, 1, 2].map(() => startServer(server.bin, { extra: ['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000'] })),
    );
    addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
    execFileSync(CLI, ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'ignore' });
    const deadline = Date.now() + 15_000;
    while (!nodes.every((n) => cli(n.port, 'CLUSTER', 'INFO').includes('cluster_state:ok'))) {
      assert.ok(Date.now() < deadline, 'cluster never reached cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  });

  async function drive(app) {
    const http = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const base = `http://127.0.0.1:${http.address().port}`;
    try {
      for (let i = 0; i < N; i++) {
        for (const [path, method] of [['/api/hello', 'GET'], ['/login', 'POST']]) {
          const res = await fetch(base + path, { method, headers: { 'x-forwarded-for': `10.${N}.0.${i}` } });
          assert.equal(res.status, 200, await res.text());
          assert.ok(res.headers.get('ratelimit'));
        }
      }
    } finally {
      await new Promise((r) => http.close(r));
    }
  }
  const opts = () => ({ clusterNodes: addrs, trustedProxies: ['127.0.0.1'] });

  it('node-redis createCluster: sendCommand(firstKey, ...) goes to the owner, 0 MOVED', async () => {
    const { app, close } = await createNodeRedisApp(opts());
    const before = moved();
    await drive(app);
    assert.equal(moved() - before, 0);
    await close();
  });

  it('ioredis Cluster: the app routes by slot itself, 0 MOVED', async () => {
    const { app, close, client } = await createIoredisApp(opts());
    await new Promise((r) => (client.status === 'ready' ? r() : client.once('ready', r)));
    const before = moved();
    await drive(app);
    assert.equal(moved() - before, 0);
    await close();
  });

  it('ioredis cluster.call(RL.*): a random node, then MOVED (works, costs a round trip)', async (t) => {
    const cluster = new Redis.Cluster(addrs.map((a) => ({ host: '127.0.0.1', port: Number(a.split(':')[1]) })));
    await new Promise((r) => cluster.once('ready', r));
    const before = moved();
    for (let i = 0; i < N; i++) {
      const reply = await cluster.call('RL.SLIDING', `rl:{plain:${i}}:x`, '5', '60000');
      assert.deepEqual(reply.slice(0, 3), [1, 5, 4]);
    }
    const redirects = moved() - before;
    t.diagnostic(`ioredis cluster.call: ${redirects} MOVED for ${N} RL.SLIDING calls`);
    assert.ok(redirects > 0, 'expected ioredis to send some RL.* to a node that does not own the key');
    await cluster.quit();
  });

  it('RL.ALL: keys of different slots are CROSSSLOT; one hash tag is one slot', async () => {
    const cluster = createCluster({ rootNodes: addrs.map((a) => ({ url: `redis://${a}` })) });
    await cluster.connect();
    const pol = ['SLIDING', '5', '60000', 'SLIDING', '50', '3600000'];
    await assert.rejects(cluster.sendCommand('a', false, ['RL.ALL', '2', 'a', 'b', ...pol]), /CROSSSLOT/);
    const ok = await cluster.sendCommand('{u:1}:m', false, ['RL.ALL', '2', '{u:1}:m', '{u:1}:h', ...pol]);
    assert.deepEqual(ok, [1, [1, 5, 4, 0, 60000], [1, 50, 49, 0, 3600000]]);
    await cluster.close();
  });
});
