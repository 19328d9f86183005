// `npm start` under a process manager: SIGTERM to npm reaches the gateway, which drains and
// exits, so nothing is left serving (the shell npm runs the script in used to die alone and
// leave `node dist/main.js` running).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ROOT, exitOf, launch, tail } from './helpers/agents.ts';
import { call, eventually } from './helpers/gateway.ts';
import { freePort } from './helpers/ports.ts';

describe('npm start', { timeout: 180_000 }, () => {
  it('SIGTERM to npm drains the gateway and leaves no process serving', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const npm = launch('npm', ['start', '--silent'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        REQUEST_LOG: 'false',
        npm_config_update_notifier: 'false',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // a group of its own: whatever is left is stopped at the end, and only that
    });
    const output = tail(npm.stdout);
    tail(npm.stderr);
    try {
      await eventually(
        async () => (await call(base, 'GET', '/health/live').catch(() => undefined))?.status === 200,
        120_000,
        'npm start to serve',
      );
      npm.kill('SIGTERM');
      assert.deepEqual(await exitOf(npm, 30_000), { code: 0, signal: null }, output.text());
      assert.match(output.text(), /"msg":"draining"/);
      await eventually(
        async () =>
          await call(base, 'GET', '/health/live').then(
            () => false,
            () => true,
          ),
        10_000,
        'the port to be free',
      );
    } finally {
      if (npm.pid !== undefined) {
        try {
          process.kill(-npm.pid, 'SIGKILL');
        } catch {}
      }
    }
  });
});
