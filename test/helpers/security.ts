// Shared by the security tests (access-tokens, rate-limits, https, etcd-security,
// timeouts): the tokens they use, answers they check, and the gateway run as npm start does.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { after, before } from 'node:test';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tokenDigest } from '../../src/auth/tokens.ts';
import type { Answer } from './gateway.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export const SECRET = {
  ops: 'ops-secret-0f5b9c',
  dashboard: 'dashboard-secret-77e1',
  payments: 'payments-secret-a41d',
  orders: 'orders-secret-5c2e', // stored only as its SHA-256
};
const TOKENS_FILE = {
  tokens: [
    { name: 'ops', token: SECRET.ops, admin: true },
    { name: 'dashboard', token: SECRET.dashboard, read: ['*'], write: [] },
    { name: 'payments-ci', token: SECRET.payments, read: ['payments*'], write: ['payments*'] },
    { name: 'orders-agent', sha256: tokenDigest(SECRET.orders), read: ['orders'], write: ['orders'] },
  ],
};
export const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });
export const body = (extra: Record<string, unknown> = {}) => ({ address: '10.0.0.1', port: 8080, ttl: 0, ...extra });

export function assertProblem(r: Answer, status: number, code: string): void {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(r.json.code, code, r.text);
  assert.doesNotMatch(r.text, /\n\s+at |node_modules|127\.0\.0\.1:\d+/, 'no stack trace or internal address in an answer');
}

/** GET over https trusting `ca` (fetch cannot take a CA on Node 20). */
export function httpsGet(url: string, ca: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((ok, ko) => {
    https
      .get(url, { ca, timeout: 5000 }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => ok({ status: res.statusCode ?? 0, text }));
      })
      .on('error', ko);
  });
}

/** `node --import tsx src/main.ts` with these settings: how it ended, and what it said. */
export function runMain(
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<{ code: number | null; stderr: string; stdout: string; ms: number }> {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((ok) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      ok({ code, stderr, stdout, ms: Date.now() - t0 });
    }),
  );
}

/** TOKENS_FILE written into `dir`: its path. */
/** A temp directory holding the tokens file, made before the calling file's tests and removed after them. */
export function tokensFixture(): { dir: string; file: string } {
  const fixture = { dir: '', file: '' };
  before(async () => {
    fixture.dir = await mkdtemp(join(tmpdir(), 'gw-sec-'));
    fixture.file = join(fixture.dir, 'tokens.json');
    await writeFile(fixture.file, JSON.stringify(TOKENS_FILE));
  });
  after(async () => {
    if (fixture.dir) await rm(fixture.dir, { recursive: true, force: true });
  });
  return fixture;
}
