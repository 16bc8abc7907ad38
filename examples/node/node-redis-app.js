'use strict';
// Express + node-redis v5 calling RL.* with sendCommand.
//
//   REDIS_URL=redis://127.0.0.1:6379 RESP=3 PORT=3000 node node-redis-app.js
//   REDIS_CLUSTER=127.0.0.1:7000,127.0.0.1:7001 node node-redis-app.js
//
// Every argument must be a string (or Buffer): sendCommand throws
// `TypeError: "arguments[2]" must be of type "string | Buffer"` on a number.
// RESP: 2 (default) or 3; decisions are the same five integers under both.
const { createClient, createCluster } = require('redis');
const { buildApp, envOptions } = require('./lib/app');

/**
 * @param {{redisUrl?: string, clusterNodes?: string[], resp?: 2|3, failure?: 'closed'|'open',
 *          trustedProxies?: string[], timeoutMs?: number}} o
 */
async function createNodeRedisApp(o = {}) {
  const RESP = o.resp ?? 2;
  let client;
  let call;
  if (o.clusterNodes && o.clusterNodes.length) {
    // Cluster: node-redis does not look up RL.* key positions; sendCommand's first
    // argument names the key that picks the slot, so RL.* goes straight to its owner.
    // (Without it, a random node answers MOVED and the client follows.)
    client = createCluster({
      rootNodes: o.clusterNodes.map((n) => ({ url: `redis://${n}` })),
      RESP,
    });
    call = (args, firstKey) => client.sendCommand(firstKey, false, args);
  } else {
    client = createClient({
      url: o.redisUrl ?? 'redis://127.0.0.1:6379',
      RESP,
      // Fail fast while disconnected instead of queueing: the failure policy answers.
      disableOfflineQueue: true,
    });
    call = (args) => client.sendCommand(args);
  }
  client.on('error', (err) => o.onError?.(err)); // reconnects by itself; never crash the app
  await client.connect();
  const app = buildApp(call, o);
  return { app, client, close: () => client.close() };
}

module.exports = { createNodeRedisApp };

if (require.main === module) {
  (async () => {
    const { app } = await createNodeRedisApp({
      redisUrl: process.env.REDIS_URL,
      clusterNodes: process.env.REDIS_CLUSTER ? process.env.REDIS_CLUSTER.split(',') : undefined,
      resp: process.env.RESP === '3' ? 3 : 2,
      onError: (err) => console.warn('redis:', err.message),
      ...envOptions(),
    });
    const port = Number(process.env.PORT ?? 3000);
    app.listen(port, () => console.log(`node-redis example on http://127.0.0.1:${port}`));
  })().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
