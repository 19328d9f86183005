// The installed command takes its settings from the environment only: --help answers
// without starting a gateway, and an unknown argument is refused before anything starts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const run = (...args: string[]) =>
  spawnSync(process.execPath, ['bin/etcd-discovery-gateway', ...args], { encoding: 'utf8', timeout: 20_000 });

test('--help prints the usage and exits 0 without starting a gateway', () => {
  const res = run('--help');
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stdout, /^usage: etcd-discovery-gateway/);
  assert.match(res.stdout, /environment variable/);
});

test('an unknown argument exits 2 and says that settings are environment variables', () => {
  const res = run('--port', '9000');
  assert.equal(res.status, 2);
  assert.match(res.stderr, /unknown argument "--port"/);
  assert.equal(res.stdout, '');
});
