// DNS clients for tests: dig (bind9-dnsutils) as an operator runs it, its output
// read into sections, and the gateway's DNS port from /health.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestGateway } from './gateway.ts';

const run = promisify(execFile);

export interface Record {
  name: string;
  ttl: number;
  type: string;
  /** The record's data as dig prints it (`1 100 80 target.` for SRV). */
  data: string;
}

export interface DigAnswer {
  status: string;
  /** Header flags as dig prints them: qr, aa, tc, rd... */
  flags: string[];
  answer: Record[];
  authority: Record[];
  additional: Record[];
  raw: string;
}

/** The DNS port a gateway listens on (UDP and TCP), as /health says (to a token holder, with access control on). */
export async function dnsPort(gw: TestGateway, headers: { [name: string]: string } = {}): Promise<number> {
  const health = await gw.request('GET', '/health', undefined, headers);
  if (!health.json?.dns?.enabled) throw new Error(`DNS is off: ${health.text}`);
  return health.json.dns.port as number;
}

/** One dig query against the gateway (no recursion asked); `options` are dig's (+tcp, +bufsize=N, +ignore...). */
export async function dig(port: number, name: string, type: string, ...options: string[]): Promise<DigAnswer> {
  const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(port), '+norec', '+time=10', '+tries=1', name, type, ...options], {
    timeout: 60_000,
  });
  const status = /status: ([A-Z]+)/.exec(stdout)?.[1] ?? '';
  const flags = /;; flags: ([a-z ]+)[;]/.exec(stdout)?.[1]?.trim().split(/\s+/) ?? [];
  return {
    status,
    flags,
    answer: section(stdout, 'ANSWER'),
    authority: section(stdout, 'AUTHORITY'),
    additional: section(stdout, 'ADDITIONAL'),
    raw: stdout,
  };
}

function section(text: string, title: string): Record[] {
  const start = text.indexOf(`;; ${title} SECTION:\n`);
  if (start < 0) return [];
  const lines = text.slice(start).split('\n').slice(1);
  const records: Record[] = [];
  for (const line of lines) {
    if (!line.trim()) break;
    const [name = '', ttl = '', , type = '', ...data] = line.split(/\s+/);
    records.push({ name, ttl: Number(ttl), type, data: data.join(' ') });
  }
  return records;
}
