// The load generator's ceiling: wrk's rate, with the same script, connections
// and threads as a measured run, against a trivial route: haproxy (C, one
// thread) answering the captured bytes and headers from memory, with no
// application behind it. A ratio whose faster side comes within 10% of that
// rate measured wrk as much as the servers, so it is refused (table.ts).
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, logsDir, spawnCommand, waitFor200, type CapturedAnswer, type Child } from './procs.ts';

const HAPROXY = process.env.HAPROXY_BIN ?? 'haproxy';

/** Install Debian's haproxy when it is missing (as ensureWrk installs wrk). */
export function ensureHaproxy(): void {
  if (spawnSync(HAPROXY, ['-v'], { stdio: 'ignore' }).error === undefined) return;
  if (process.env.HAPROXY_BIN) throw new Error(`HAPROXY_BIN=${HAPROXY} is not runnable`);
  console.log('bench: haproxy is missing (the generator-ceiling route); installing it with apt');
  for (const args of [
    ['apt-get', 'update', '-qq'],
    ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'haproxy'],
  ]) {
    const [cmd, ...rest] = process.getuid?.() === 0 ? args : ['sudo', ...args];
    const r = spawnSync(cmd!, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.error || r.status !== 0) throw new Error(`${[cmd, ...rest].join(' ')} failed: install haproxy or set HAPROXY_BIN`);
  }
}

const quoted = (v: string) => `"${v.replace(/(["\\])/g, '\\$1')}"`;

/** haproxy answering every request (any method, any path) with `answer`, on its own port. */
export async function startTrivialRoute(answer: CapturedAnswer): Promise<Child> {
  const port = await freePort();
  const { 'content-type': type = 'application/json', ...rest } = answer.headers;
  const hdrs = Object.entries(rest)
    .map(([k, v]) => ` hdr ${k} ${quoted(v)}`)
    .join('');
  const config = [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout client 30s',
    '  timeout connect 5s',
    '  timeout server 30s',
    '  timeout http-keep-alive 30s',
    'frontend trivial',
    `  bind 127.0.0.1:${port}`,
    `  http-request return status 200 content-type ${quoted(type)} file ${quoted(answer.bodyFile)}${hdrs}`,
    '',
  ].join('\n');
  const file = join(await logsDir(), `haproxy-${port}.cfg`);
  await writeFile(file, config);
  const t0 = performance.now();
  const child = await spawnCommand('haproxy', HAPROXY, ['-f', file, '-db'], {}, port);
  try {
    await waitFor200(child, '/', t0);
    return child;
  } catch (err) {
    await child.stop(1000);
    throw err;
  }
}
