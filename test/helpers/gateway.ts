// Gateways for tests: built in-process with buildApp (the same factory npm start
// uses) and listening on a free loopback port, on the embedded store or on a
// real etcd with a key prefix of its own.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppDeps } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { EtcdCluster } from './etcd.ts';

export interface TestGateway {
  app: FastifyInstance;
  base: string;
  prefix: string;
  request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Answer>;
  close(): Promise<void>;
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** A key prefix no other test uses. */
export function uniquePrefix(label = 't'): string {
  return `/test-${label}-${randomBytes(4).toString('hex')}`;
}

export async function startGateway(
  opts: { etcd?: EtcdCluster; prefix?: string; env?: Record<string, string>; deps?: AppDeps } = {},
): Promise<TestGateway> {
  const prefix = opts.prefix ?? uniquePrefix();
  const env: Record<string, string> = { LOG_LEVEL: 'silent', ETCD_PREFIX: prefix, ...opts.env };
  if (opts.etcd) env.ETCD_ENDPOINTS = opts.etcd.endpoints.join(',');
  const app = await buildApp(loadConfig(env), opts.deps);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const base = `${env.TLS_CERT_FILE ? 'https' : 'http'}://127.0.0.1:${port}`;
  return {
    app,
    base,
    prefix,
    request: (method, path, body, headers = {}) => call(base, method, path, body, headers),
    close: () => app.close(),
  };
}

/** One HTTP request with fetch; body objects are sent as JSON, strings as they are. */
export async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {}
  return { status: res.status, headers: res.headers, text, json };
}

/** Poll `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** An instance body: address and port, plus any other fields. */
/** The path of one instance. */
export const instancePath = (service: string, id: string) => `/services/${service}/instances/${id}`;

export const instanceBody = (address: string, port: number, extra: Record<string, unknown> = {}) => ({ address, port, ...extra });

/** One sample of a Prometheus metric from /metrics text (0 when absent). */
export async function metricValue(gw: TestGateway, name: string, labels = ''): Promise<number> {
  const text = (await gw.request('GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ').pop()) : 0;
}
