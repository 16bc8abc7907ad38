'use strict';
// Express + ioredis v5 calling RL.* with call().
//
//   REDIS_URL=redis://127.0.0.1:6379 PORT=3001 node ioredis-app.js
//   REDIS_CLUSTER=127.0.0.1:7000,127.0.0.1:7001 node ioredis-app.js
//
// ioredis speaks RESP2 only (its parser, redis-parser 3, knows no RESP3 types; sending
// HELLO 3 yourself makes it fail with "Protocol error, got "%" as reply type byte" and
// reconnect). The decisions are the same five integers anyway.
// call() stringifies numbers itself; the shared middleware passes strings regardless.
const Redis = require('ioredis');
const calculateSlot = require('cluster-key-slot'); // ioredis's own dependency
const { buildApp, envOptions } = require('./lib/app');

/**
 * @param {{redisUrl?: string, clusterNodes?: string[], resp?: 2|3, failure?: 'closed'|'open',
 *          trustedProxies?: string[], timeoutMs?: number}} o
 */
async function createIoredisApp(o = {}) {
  if (o.resp === 3) throw new Error('ioredis 5 supports RESP2 only; use node-redis for RESP3');
  let client;
  if (o.clusterNodes && o.clusterNodes.length) {
    // Cluster: ioredis knows key positions only for the commands in its built-in table
    // (@ioredis/commands), not RL.*: cluster.call() sends them to a random node, which
    // answers MOVED, and ioredis follows it (an extra round trip for most calls). So
    // `call` below sends each command to the owner of its first key's slot itself.
    client = new Redis.Cluster(
      o.clusterNodes.map((n) => {
        const [host, port] = n.split(':');
        return { host, port: Number(port) };
      }),
    );
  } else {
    client = new Redis(o.redisUrl ?? 'redis://127.0.0.1:6379', {
      lazyConnect: true,
      // Fail fast while disconnected instead of queueing: the failure policy answers.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
    });
  }
  client.on('error', (err) => o.onError?.(err));
  if (client.status === 'wait') await client.connect();
  const call =
    client instanceof Redis.Cluster
      ? (args, firstKey) => routedCall(client, args, firstKey)
      : (args) => client.call(args[0], ...args.slice(1));
  const app = buildApp(call, o);
  return { app, client, close: () => client.quit() };
}

/**
 * Sends one RL.* command of an ioredis Cluster to the primary that owns `firstKey`'s
 * slot, from ioredis's own slot table, instead of a random node. If the table is stale
 * (a resharding or failover: MOVED / ASK / TRYAGAIN) or not loaded yet, falls back to
 * cluster.call(), which follows redirections and refreshes the table.
 */
async function routedCall(cluster, args, firstKey) {
  const owner = cluster.slots[calculateSlot(firstKey)]?.[0]; // "host:port" of the primary
  const node = owner && cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
  if (node) {
    try {
      return await node.call(args[0], ...args.slice(1));
    } catch (err) {
      if (!/^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN) /.test(String(err.message))) throw err;
    }
  }
  return cluster.call(args[0], ...args.slice(1));
}

module.exports = { createIoredisApp, routedCall };

if (require.main === module) {
  (async () => {
    const { app } = await createIoredisApp({
      redisUrl: process.env.REDIS_URL,
      clusterNodes: process.env.REDIS_CLUSTER ? process.env.REDIS_CLUSTER.split(',') : undefined,
      resp: process.env.RESP === '3' ? 3 : 2,
      onError: (err) => console.warn('redis:', err.message),
      ...envOptions(),
    });
    const port = Number(process.env.PORT ?? 3001);
    app.listen(port, () => console.log(`ioredis example on http://127.0.0.1:${port}`));
  })().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
