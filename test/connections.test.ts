// Slow and silent connections (plain HTTP, TLS with HTTP/1.1, HTTP/2): a request whose
// headers or body do not arrive within the receive deadline is closed; a TCP connection
// that never starts its TLS handshake does not hold SIGTERM; token guesses on /metrics
// are rate-limited. The deadline is shortened to 1 s here (30 s in production).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { makeCerts, type TestCerts } from './helpers/certs.ts';
import { call, eventually, startGateway, type TestGateway } from './helpers/gateway.ts';
import { freePort } from './helpers/ports.ts';

const RECEIVE_MS = 1000;
/** Far past the deadline, far below the next timeout that could close the connection (30 s). */
const CLOSED_WITHIN_MS = 10_000;

/** Sends `head`, then one more byte every 200 ms, and resolves with how long the gateway let it go on. */
async function trickle(socket: Socket | ReturnType<typeof tlsConnect>, head: string): Promise<number> {
  const start = Date.now();
  const drip = setInterval(() => socket.writable && socket.write('a'), 200);
  try {
    socket.write(head);
    socket.on('error', () => {});
    socket.resume();
    await new Promise<void>((resolve, reject) => {
      socket.once('close', () => resolve());
      setTimeout(() => reject(new Error(`still open after ${CLOSED_WITHIN_MS} ms`)), CLOSED_WITHIN_MS).unref();
    });
    return Date.now() - start;
  } finally {
    clearInterval(drip);
    socket.destroy();
  }
}

let certs: TestCerts;
before(async () => {
  certs = await makeCerts();
});
after(() => certs?.remove());

describe('receive deadlines on plain HTTP', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ deps: { receiveTimeoutMs: RECEIVE_MS } });
  });
  after(() => gw.close());

  it('headers trickled byte by byte are cut near the deadline', async () => {
    const socket = netConnect(Number(new URL(gw.base).port), '127.0.0.1');
    await trickle(socket, 'GET /services HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  });
});

describe('receive deadlines over TLS', () => {
  let gw: TestGateway;
  let port: number;
  before(async () => {
    gw = await startGateway({
      env: { TLS_CERT_FILE: certs.server.certFile, TLS_KEY_FILE: certs.server.keyFile },
      deps: { receiveTimeoutMs: RECEIVE_MS },
    });
    port = Number(new URL(gw.base).port);
  });
  after(() => gw.close());

  const http1 = async () => {
    const socket = tlsConnect({ port, host: '127.0.0.1', ca: readFileSync(certs.ca.certFile), ALPNProtocols: ['http/1.1'] });
    await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    return socket;
  };

  it('HTTP/1.1: headers trickled byte by byte are cut', async () => {
    await trickle(await http1(), 'GET /services HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  });

  it('HTTP/1.1: a body trickled byte by byte is cut', async () => {
    const head =
      'PUT /services/slow/instances/i-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"address":"10.0.0.1","port":80,"metadata":{"pad":"';
    await trickle(await http1(), head);
  });

  it('HTTP/2: a body trickled byte by byte is cut', async () => {
    const session = http2Connect(`https://127.0.0.1:${port}`, { ca: readFileSync(certs.ca.certFile) });
    session.on('error', () => {});
    const stream = session.request({ ':method': 'PUT', ':path': '/services/slow/instances/i-2', 'content-type': 'application/json' });
    stream.on('error', () => {});
    stream.resume();
    stream.write('{"address":"10.0.0.1","port":80,"metadata":{"pad":"');
    const drip = setInterval(() => stream.writable && stream.write('a'), 200);
    try {
      await new Promise<void>((resolve, reject) => {
        stream.once('close', () => resolve());
        setTimeout(() => reject(new Error(`stream still open after ${CLOSED_WITHIN_MS} ms`)), CLOSED_WITHIN_MS).unref();
      });
    } finally {
      clearInterval(drip);
      session.destroy();
    }
  });

  it('a whole request sent at once is answered as usual', async () => {
    const socket = await http1();
    let text = '';
    socket.setEncoding('utf8').on('data', (d: string) => (text += d));
    socket.write('GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    assert.match(text, /^HTTP\/1\.1 200/);
  });
});

describe('SIGTERM over TLS', () => {
  it('a TCP connection that never starts its handshake does not hold the drain: exit 0 within the grace', async () => {
    const port = await freePort();
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: {
        PATH: process.env.PATH ?? '',
        HOST: '127.0.0.1',
        PORT: String(port),
        TLS_CERT_FILE: certs.server.certFile,
        TLS_KEY_FILE: certs.server.keyFile,
        SHUTDOWN_GRACE_SECONDS: '8',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    try {
      const ca = readFileSync(certs.ca.certFile);
      await eventually(
        async () => {
          if (proc.exitCode !== null) throw new Error(`gateway exited with ${proc.exitCode}: ${log}`);
          return (await httpsStatus(`https://127.0.0.1:${port}/health/live`, ca)) === 200;
        },
        30_000,
        'the gateway to serve',
      );
      const silentSocket = netConnect(port, '127.0.0.1');
      silentSocket.on('error', () => {});
      await new Promise((resolve) => silentSocket.once('connect', resolve));
      proc.kill('SIGTERM');
      assert.equal(await exited, 0, log);
      silentSocket.destroy();
    } finally {
      proc.kill('SIGKILL');
    }
  });
});

async function httpsStatus(url: string, ca: Buffer): Promise<number | undefined> {
  const { request } = await import('node:https');
  return new Promise((resolve) => {
    const req = request(url, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

describe('token guesses on /metrics with AUTH_METRICS=true', () => {
  let gw: TestGateway;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'connections-'));
    const tokensFile = join(dir, 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [{ name: 'ops', token: 'right', admin: true }] }));
    gw = await startGateway({ env: { AUTH_TOKENS_FILE: tokensFile, AUTH_METRICS: 'true', RATE_LIMIT_MAX: '3' } });
  });
  after(async () => {
    await gw.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('count against the caller: 401 three times, then 429; probes are never limited', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 5; i++)
      codes.push((await call(gw.base, 'GET', '/metrics', undefined, { authorization: `Bearer guess-${i}` })).status);
    assert.deepEqual(codes, [401, 401, 401, 429, 429]);
    assert.equal((await gw.request('GET', '/health/live')).status, 200);
  });
});
