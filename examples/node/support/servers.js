'use strict';
// Starts real servers (with and without the redlimit module) on free ports in temp dirs.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const MODULE = process.env.REDLIMIT_MODULE || path.join(REPO, 'target', 'debug', 'libredlimit.so');
// scripts/test.sh sets REDLIMIT_REQUIRE_ALL_SERVERS=1: the full suite never skips.
const SKIP_MISSING =
  process.env.REDLIMIT_SKIP_MISSING_SERVERS === '1' && process.env.REDLIMIT_REQUIRE_ALL_SERVERS !== '1';

const SERVERS = [
  { name: 'redis-7.0', bin: '/usr/bin/redis-server' },
  { name: 'redis-8.2', bin: path.join(REPO, '.servers', 'redis-8.2', 'redis-server') },
  { name: 'valkey-9.1', bin: path.join(REPO, '.servers', 'valkey-9.1', 'valkey-server') },
];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    sock.setTimeout(500, () => sock.destroy());
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      data += d;
      if (data.includes('\r\n')) {
        sock.destroy();
        resolve(data.startsWith('+PONG'));
      }
    });
    sock.on('error', () => resolve(false));
    sock.on('close', () => resolve(data.startsWith('+PONG')));
  });
}

const started = new Set();
process.on('exit', () => {
  for (const child of started) child.kill('SIGKILL');
});

/**
 * Starts `bin` on a free port in a fresh temp dir; `withModule` loads the module.
 * `extra`: more server arguments. Resolves to { port, stop() }.
 */
async function startServer(bin, { withModule = true, extra = [] } = {}) {
  if (withModule && !fs.existsSync(MODULE)) {
    throw new Error(`module ${MODULE} not found: run cargo build -p redlimit-module (or set REDLIMIT_MODULE)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redlimit-node-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', ...extra];
    if (withModule) args.push('--loadmodule', MODULE);
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(child);
    let log = '';
    child.stdout.on('data', (d) => (log += d));
    child.stderr.on('data', (d) => (log += d));
    let exited = false;
    child.on('exit', () => (exited = true));
    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline && !(await ping(port))) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!exited && (await ping(port))) {
      return {
        port,
        dir,
        log: () => log,
        stop: async () => {
          started.delete(child);
          if (!exited) {
            const gone = new Promise((r) => child.once('exit', r));
            child.kill('SIGTERM');
            await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
            if (!exited) child.kill('SIGKILL');
          }
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill('SIGKILL');
    started.delete(child);
    if (attempt >= 2 || !/address already in use/i.test(log)) {
      throw new Error(`${bin} did not start on port ${port}:\n${log}`);
    }
  }
}

module.exports = { SERVERS, SKIP_MISSING, MODULE, startServer, freePort };
