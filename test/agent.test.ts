// discovery-agent end to end: the real gateway (embedded store, and etcd for the lease case),
// the agent as a real process, and CMD as a real process (a tiny HTTP server written to a
// temp dir) that records when it got SIGTERM and what the gateway said at that moment.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { freePort } from './helpers/ports.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Processes

/** Polls `probe` until it answers a value other than undefined; fails with `what` at the deadline. */
async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
  context?: { stderr(): string },
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${context ? `; its output:\n${context.stderr()}` : ''}`);
    }
    await sleep(100);
  }
}

/** Keeps the last 64 KiB a child wrote, for failure messages; the pipe is always drained. */
function tail(stream: NodeJS.ReadableStream | null): { text(): string } {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    text = (text + chunk).slice(-65_536);
  });
  return { text: () => text };
}

const closed = new WeakMap<ChildProcess, Promise<unknown>>();

/** Spawns and remembers when the child is gone and its pipes are read to the end ('close'). */
function launch(file: string, args: string[], options: SpawnOptions): ChildProcess {
  const proc = spawn(file, args, options);
  closed.set(
    proc,
    once(proc, 'close').catch(() => undefined),
  ); // a spawn error shows as exit code null
  return proc;
}

async function exitOf(proc: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      closed.get(proc),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`process ${proc.pid} still running after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  return { code: proc.exitCode, signal: proc.signalCode };
}

/** Waits for the agent to log a line matching `pattern` (it logs after the gateway has answered). */
async function logged(agent: AgentProcess, pattern: RegExp): Promise<void> {
  await until(`the agent to log ${pattern}`, () => (pattern.test(agent.stderr()) ? true : undefined), 10_000, agent);
}

interface Gateway {
  url: string;
  port: number;
  /** Bearer token the test itself reads with, when the gateway has access control on. */
  readToken?: string;
  logs(): string;
  stop(): Promise<void>;
}

const gateways = new Set<Gateway>();

/** The real gateway: `node --import tsx src/main.ts`, ready when GET /health/ready answers 200. */
async function startGateway(env: Record<string, string> = {}, port?: number): Promise<Gateway> {
  port ??= await freePort();
  const proc = launch(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = tail(proc.stdout);
  const err = tail(proc.stderr);
  const url = `http://127.0.0.1:${port}`;
  const gateway: Gateway = {
    url,
    port,
    logs: () => out.text() + err.text(),
    async stop() {
      gateways.delete(gateway);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      try {
        await exitOf(proc, 5_000);
      } catch {
        proc.kill('SIGKILL');
        await exitOf(proc, 5_000);
      }
    },
  };
  gateways.add(gateway);
  try {
    await until(
      'the gateway to be ready',
      async () => {
        if (proc.exitCode !== null) throw new Error(`gateway exited with ${proc.exitCode}:\n${gateway.logs()}`);
        try {
          const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(1_000) });
          await res.body?.cancel();
          return res.status === 200 ? true : undefined;
        } catch {
          return undefined;
        }
      },
      45_000,
      { stderr: gateway.logs },
    );
  } catch (e) {
    await gateway.stop();
    throw e;
  }
  return gateway;
}

interface AgentProcess {
  proc: ChildProcess;
  stderr(): string;
  exit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const agents = new Set<ChildProcess>();

function startAgent(args: string[], env: Record<string, string> = {}): AgentProcess {
  const proc = launch(process.execPath, ['--import', 'tsx', 'src/agent/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, DISCOVERY_GATEWAY: '', DISCOVERY_TOKEN: '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  agents.add(proc);
  proc.once('exit', () => agents.delete(proc));
  const err = tail(proc.stderr);
  return { proc, stderr: err.text, exit: (timeoutMs = 15_000) => exitOf(proc, timeoutMs) };
}

// CMD: an HTTP server whose /health fails while the file `fail` exists, that exits with the code
// written to the file `exit`, and on SIGTERM records {at, probe} in `sigterm` (probe: the status
// of GET CMD_PROBE at that moment), then exits with CMD_TERM_EXIT unless CMD_IGNORE_TERM is set.
const CMD_SOURCE = `
import http from 'node:http';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const dir = process.env.CMD_DIR;
writeFileSync(join(dir, 'started'), String(Date.now()));
const server = http.createServer((req, res) => {
  const failing = existsSync(join(dir, 'fail'));
  res.writeHead(failing ? 503 : 200).end(failing ? 'failing' : 'ok');
});
setTimeout(() => server.listen(Number(process.env.CMD_PORT), '127.0.0.1', () => {
  writeFileSync(join(dir, 'listening'), String(Date.now()));
}), Number(process.env.CMD_LISTEN_AFTER_MS ?? 0));
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(99); // the agent died (a test that failed): do not linger
  if (existsSync(join(dir, 'exit'))) process.exit(Number(readFileSync(join(dir, 'exit'), 'utf8')));
}, 50);
process.on('SIGTERM', async () => {
  const at = Date.now();
  let probe = null;
  if (process.env.CMD_PROBE) {
    try { probe = (await fetch(process.env.CMD_PROBE)).status; } catch (err) { probe = String(err); }
  }
  writeFileSync(join(dir, 'sigterm'), JSON.stringify({ at, probe }));
  if (process.env.CMD_IGNORE_TERM) return;
  process.exit(Number(process.env.CMD_TERM_EXIT ?? 0));
});
`;

interface Cmd {
  dir: string;
  port: number;
  /** The agent's `-- CMD ARGS` part. */
  argv: string[];
  env: Record<string, string>;
  file(name: string): string;
  sigterm(): Promise<{ at: number; probe: number | string | null }>;
}

let tmp: string;

async function makeCmd(env: Record<string, string> = {}): Promise<Cmd> {
  const dir = await mkdtemp(join(tmp, 'cmd-'));
  const port = await freePort();
  const script = join(dir, 'cmd.mjs');
  await writeFile(script, CMD_SOURCE);
  return {
    dir,
    port,
    argv: ['--', process.execPath, script],
    env: { CMD_DIR: dir, CMD_PORT: String(port), ...env },
    file: (name) => join(dir, name),
    sigterm: async () => JSON.parse(await readFile(join(dir, 'sigterm'), 'utf8')) as { at: number; probe: number | string | null },
  };
}

// ---------------------------------------------------------------------------------------------
// Gateway API as a client sees it

interface Instance {
  id: string;
  address: string;
  port: number;
  tags: string[];
  metadata: Record<string, string>;
  weight: number;
  status: string;
  ttl: number;
  registeredAt: string;
}

async function instances(gateway: Gateway, service: string): Promise<Instance[]> {
  const headers: Record<string, string> = gateway.readToken === undefined ? {} : { authorization: `Bearer ${gateway.readToken}` };
  const res = await fetch(`${gateway.url}/services/${service}`, { headers });
  assert.equal(res.status, 200);
  return ((await res.json()) as { instances: Instance[] }).instances;
}

async function instance(gateway: Gateway, service: string, id: string): Promise<Instance | undefined> {
  return (await instances(gateway, service)).find((i) => i.id === id);
}

interface ChangeEvent {
  event: string;
  data: { type?: string; id?: string; instance?: Instance };
  receivedAt: number;
}

/** Subscribes to /services/{name}/events and collects every change event with its arrival time. */
async function subscribe(gateway: Gateway, service: string): Promise<{ events: ChangeEvent[]; close(): void }> {
  const controller = new AbortController();
  const res = await fetch(`${gateway.url}/services/${service}/events`, { signal: controller.signal });
  assert.equal(res.status, 200);
  const events: ChangeEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  void (async () => {
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (data !== '') events.push({ event, data: JSON.parse(data) as ChangeEvent['data'], receivedAt: Date.now() });
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return { events, close: () => controller.abort() };
}

let serial = 0;
const serviceName = (what: string) => `agent-${what}-${process.pid}-${++serial}`;

// ---------------------------------------------------------------------------------------------

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'agent-test-'));
});

after(async () => {
  for (const proc of agents) proc.kill('SIGKILL');
  await Promise.all([...gateways].map((g) => g.stop()));
  await rm(tmp, { recursive: true, force: true });
});

describe('discovery-agent against the gateway (embedded store)', { concurrency: 4 }, () => {
  let gateway: Gateway;
  before(async () => {
    gateway = await startGateway();
  });

  it('registers only once --check answers 2xx, with tags, metadata and weight', async () => {
    const service = serviceName('check');
    const cmd = await makeCmd({ CMD_LISTEN_AFTER_MS: '1500' });
    const agent = startAgent(
      [
        'run',
        '--gateway',
        gateway.url,
        '--service',
        service,
        '--address',
        '127.0.0.1',
        '--port',
        String(cmd.port),
        '--tag',
        'http',
        '--tag',
        'v2',
        '--meta',
        'zone=eu-1',
        '--meta',
        'version=2.3.1',
        '--weight',
        '42',
        '--check',
        `http://127.0.0.1:${cmd.port}/health`,
        ...cmd.argv,
      ],
      cmd.env,
    );
    // Until CMD listens, nothing is registered.
    await until('CMD to listen', async () => {
      if (existsSync(cmd.file('listening'))) return true;
      assert.deepEqual(await instances(gateway, service), [], 'registered before the check answered');
      return undefined;
    });
    const listeningAt = Number(await readFile(cmd.file('listening'), 'utf8'));
    const registered = await until('the registration', () => instance(gateway, service, `127.0.0.1:${cmd.port}`), undefined, agent);
    assert.ok(Date.parse(registered.registeredAt) >= listeningAt - 5, 'registered before CMD listened');
    assert.equal(registered.address, '127.0.0.1');
    assert.equal(registered.port, cmd.port);
    assert.deepEqual(registered.tags, ['http', 'v2']);
    assert.deepEqual(registered.metadata, { zone: 'eu-1', version: '2.3.1' });
    assert.equal(registered.weight, 42);
    assert.equal(registered.status, 'up');
    assert.equal(registered.ttl, 10);
    await logged(agent, /registered/);

    agent.proc.kill('SIGTERM');
    assert.equal((await agent.exit()).code, 0);
  });

  it('on SIGTERM sets draining, deregisters, waits --drain, then signals CMD and exits with its code', async () => {
    const service = serviceName('sigterm');
    const cmd = await makeCmd();
    const id = 'web-1';
    cmd.env.CMD_PROBE = `${gateway.url}/services/${service}/instances/${id}`;
    cmd.env.CMD_TERM_EXIT = '42';
    const events = await subscribe(gateway, service);
    try {
      const agent = startAgent(
        [
          'run',
          '--gateway',
          gateway.url,
          '--service',
          service,
          '--id',
          id,
          '--address',
          '127.0.0.1',
          '--port',
          String(cmd.port),
          '--drain',
          '1',
          ...cmd.argv,
        ],
        cmd.env,
      );
      await until('the registration', () => instance(gateway, service, id), undefined, agent);
      await until('CMD to set up its SIGTERM handler', () => (existsSync(cmd.file('listening')) ? true : undefined));
      agent.proc.kill('SIGTERM');
      const exit = await agent.exit();
      assert.equal(exit.code, 42, agent.stderr());

      const sigterm = await cmd.sigterm();
      assert.equal(sigterm.probe, 404, 'CMD got SIGTERM while the gateway still had the instance');
      const changes = events.events.filter((e) => e.event !== 'snapshot' && e.data.id === id);
      assert.deepEqual(
        changes.map((e) => e.event),
        ['register', 'update', 'deregister'],
      );
      assert.equal(changes[1]!.data.instance?.status, 'draining');
      const deregisteredAt = changes[2]!.receivedAt;
      assert.ok(
        sigterm.at - deregisteredAt >= 900,
        `CMD got SIGTERM ${sigterm.at - deregisteredAt} ms after the deregistration, not --drain 1 s`,
      );
      assert.match(agent.stderr(), /draining/);
      assert.match(agent.stderr(), /deregistered/);
    } finally {
      events.close();
    }
  });

  it('SIGKILLs a CMD that ignores SIGTERM after --grace and exits 137', async () => {
    const service = serviceName('grace');
    const cmd = await makeCmd({ CMD_IGNORE_TERM: '1' });
    const agent = startAgent(
      [
        'run',
        '--gateway',
        gateway.url,
        '--service',
        service,
        '--address',
        '127.0.0.1',
        '--port',
        String(cmd.port),
        '--grace',
        '1',
        ...cmd.argv,
      ],
      cmd.env,
    );
    await until('the registration', async () => (await instances(gateway, service))[0], undefined, agent);
    await until('CMD to set up its SIGTERM handler', () => (existsSync(cmd.file('listening')) ? true : undefined));
    const t0 = Date.now();
    agent.proc.kill('SIGTERM');
    const exit = await agent.exit();
    assert.equal(exit.code, 137, agent.stderr());
    assert.ok(existsSync(cmd.file('sigterm')), 'CMD never got SIGTERM');
    assert.ok(Date.now() - t0 >= 1_000, 'SIGKILL came before --grace');
    assert.deepEqual(await instances(gateway, service), []);
    assert.match(agent.stderr(), /SIGKILL/);
  });

  it('deregisters and exits with the code of a CMD that exits by itself', async () => {
    const service = serviceName('crash');
    const cmd = await makeCmd();
    const agent = startAgent(
      ['run', '--gateway', gateway.url, '--service', service, '--address', '127.0.0.1', '--port', String(cmd.port), ...cmd.argv],
      cmd.env,
    );
    await until('the registration', async () => (await instances(gateway, service))[0], undefined, agent);
    await writeFile(cmd.file('exit'), '3');
    const exit = await agent.exit();
    assert.equal(exit.code, 3, agent.stderr());
    assert.deepEqual(await instances(gateway, service), []);
    assert.match(agent.stderr(), /deregistered/);
  });

  it('sets status down after three failed checks and up on the next success', async () => {
    const service = serviceName('down');
    const cmd = await makeCmd();
    const id = `127.0.0.1:${cmd.port}`;
    const agent = startAgent(
      [
        'run',
        '--gateway',
        gateway.url,
        '--service',
        service,
        '--address',
        '127.0.0.1',
        '--port',
        String(cmd.port),
        '--check',
        `http://127.0.0.1:${cmd.port}/health`,
        ...cmd.argv,
      ],
      cmd.env,
    );
    await until('the registration', () => instance(gateway, service, id), undefined, agent);
    await writeFile(cmd.file('fail'), '');
    const failingSince = Date.now();
    await until('status down', async () => ((await instance(gateway, service, id))?.status === 'down' ? true : undefined));
    assert.ok(Date.now() - failingSince >= 1_500, 'down before three failed checks');
    await unlink(cmd.file('fail'));
    await until('status up', async () => ((await instance(gateway, service, id))?.status === 'up' ? true : undefined), 5_000);
    await logged(agent, /up -> down/);
    await logged(agent, /down -> up/);
    agent.proc.kill('SIGTERM');
    assert.equal((await agent.exit()).code, 0);
  });

  for (const [what, flags, named] of [
    ['missing --service', ['--address', '127.0.0.1', '--port', '8080'], '--service'],
    ['--port 0', ['--service', 'svc', '--address', '127.0.0.1', '--port', '0'], '--port'],
    ['an unknown flag', ['--service', 'svc', '--address', '127.0.0.1', '--port', '8080', '--colour', 'blue'], '--colour'],
    ['--meta without =', ['--service', 'svc', '--address', '127.0.0.1', '--port', '8080', '--meta', 'zone'], '--meta'],
  ] as const) {
    it(`exits 2 naming the flag for ${what}, registering and starting nothing`, async () => {
      const cmd = await makeCmd();
      const service = serviceName('flags');
      const args = flags.map((f) => (f === 'svc' ? service : f));
      const agent = startAgent(['run', '--gateway', gateway.url, ...args, ...cmd.argv], cmd.env);
      const exit = await agent.exit();
      assert.equal(exit.code, 2);
      assert.ok(agent.stderr().includes(named), `stderr does not name ${named}: ${agent.stderr()}`);
      assert.equal(existsSync(cmd.file('started')), false, 'CMD was started');
      assert.deepEqual(await instances(gateway, service), []);
    });
  }

  it('exits 127 when CMD cannot be started', async () => {
    const agent = startAgent([
      'run',
      '--gateway',
      gateway.url,
      '--service',
      serviceName('enoent'),
      '--address',
      '127.0.0.1',
      '--port',
      '9',
      '--',
      join(tmp, 'no-such-command'),
    ]);
    assert.equal((await agent.exit()).code, 127);
    assert.match(agent.stderr(), /no-such-command/);
  });

  it('without CMD keeps the registration past several TTLs and deregisters on SIGINT', async () => {
    const service = serviceName('sidecar');
    const token = 'not-a-real-secret-token';
    const agent = startAgent(
      ['run', '--gateway', gateway.url, '--service', service, '--address', 'sidecar.local', '--port', '7000', '--ttl', '2'],
      {
        DISCOVERY_TOKEN: token,
      },
    );
    const first = await until('the registration', () => instance(gateway, service, 'sidecar.local:7000'), undefined, agent);
    // Three TTLs: every read in between must show the same registration (an expiry and
    // re-registration would show a gap or a new registeredAt).
    const end = Date.now() + 3 * 2_000 + 500;
    while (Date.now() < end) {
      const now = await instance(gateway, service, 'sidecar.local:7000');
      assert.ok(now !== undefined, 'the registration lapsed');
      assert.equal(now.registeredAt, first.registeredAt, 'the instance expired and was registered again');
      await sleep(200);
    }
    assert.equal(agent.proc.exitCode, null);
    agent.proc.kill('SIGINT');
    const exit = await agent.exit();
    assert.equal(exit.code, 0, agent.stderr());
    assert.deepEqual(await instances(gateway, service), []);
    assert.ok(!agent.stderr().includes(token), 'the token appears on stderr');
  });

  it('with --ttl 0 and no CMD holds a registration that never expires until SIGTERM', async () => {
    const service = serviceName('ttl0');
    const agent = startAgent([
      'run',
      '--gateway',
      gateway.url,
      '--service',
      service,
      '--address',
      '127.0.0.1',
      '--port',
      '7004',
      '--ttl',
      '0',
    ]);
    const registered = await until('the registration', async () => (await instances(gateway, service))[0], undefined, agent);
    assert.equal(registered.ttl, 0);
    await sleep(1_500); // nothing to wait on but the signal: the agent must still be there
    assert.equal(agent.proc.exitCode, null, agent.stderr());
    agent.proc.kill('SIGTERM');
    assert.equal((await agent.exit()).code, 0, agent.stderr());
    assert.deepEqual(await instances(gateway, service), []);
  });

  it('bin/discovery-agent --help reads like a man page', async () => {
    const proc = launch(join(ROOT, 'bin', 'discovery-agent'), ['--help'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const out = tail(proc.stdout);
    const exit = await exitOf(proc, 15_000);
    assert.equal(exit.code, 0);
    for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'ENVIRONMENT', 'EXIT STATUS', 'EXAMPLES']) {
      assert.match(out.text(), new RegExp(`^${section}$`, 'm'));
    }
    assert.match(out.text(), /npx/);
  });
});

describe('discovery-agent with a gateway of its own', { concurrency: true }, () => {
  it('sends DISCOVERY_TOKEN as a bearer token, never logs it, and stops CMD and exits 1 when refused (403)', async () => {
    const secrets = { agent: `agent-secret-${process.pid}`, admin: `admin-secret-${process.pid}` };
    const tokensFile = join(tmp, 'tokens.json');
    await writeFile(
      tokensFile,
      JSON.stringify({
        tokens: [
          { name: 'agent', token: secrets.agent, read: ['agent-auth-*'], write: ['agent-auth-ok-*'] },
          { name: 'admin', token: secrets.admin, admin: true },
        ],
      }),
    );
    const gateway = await startGateway({ AUTH_TOKENS_FILE: tokensFile });
    gateway.readToken = secrets.admin;

    const allowed = serviceName('auth-ok');
    const ok = startAgent(['run', '--gateway', gateway.url, '--service', allowed, '--address', '127.0.0.1', '--port', '7003'], {
      DISCOVERY_TOKEN: secrets.agent,
    });
    await until('the registration', async () => (await instances(gateway, allowed))[0], undefined, ok);

    const refused = serviceName('auth-no');
    const cmd = await makeCmd();
    const no = startAgent(
      [
        'run',
        '--gateway',
        gateway.url,
        '--service',
        refused,
        '--address',
        '127.0.0.1',
        '--port',
        String(cmd.port),
        '--token',
        secrets.agent,
        '--check', // registers once CMD listens, so CMD has its SIGTERM handler by then
        `http://127.0.0.1:${cmd.port}/health`,
        ...cmd.argv,
      ],
      cmd.env,
    );
    const exit = await no.exit();
    assert.equal(exit.code, 1, no.stderr());
    assert.match(no.stderr(), /403/);
    assert.ok(existsSync(cmd.file('sigterm')), 'CMD was not stopped with SIGTERM');
    assert.deepEqual(await instances(gateway, refused), []);

    ok.proc.kill('SIGTERM');
    assert.equal((await ok.exit()).code, 0);
    assert.deepEqual(await instances(gateway, allowed), []);
    for (const agent of [ok, no]) assert.ok(!agent.stderr().includes(secrets.agent), `the token appears on stderr: ${agent.stderr()}`);
    await gateway.stop();
  });

  it('re-registers after the gateway restarts with an empty embedded store', async () => {
    const gateway = await startGateway();
    const service = serviceName('restart');
    const agent = startAgent([
      'run',
      '--gateway',
      gateway.url,
      '--service',
      service,
      '--address',
      '127.0.0.1',
      '--port',
      '7001',
      '--ttl',
      '2',
    ]);
    try {
      await until('the registration', async () => (await instances(gateway, service))[0], undefined, agent);
      await gateway.stop();
      const again = await startGateway({}, gateway.port);
      await until('the re-registration', async () => (await instances(again, service))[0], 15_000);
      assert.equal(agent.proc.exitCode, null, agent.stderr());
      await logged(agent, /re-registered/);
      agent.proc.kill('SIGTERM');
      assert.equal((await agent.exit()).code, 0);
      assert.deepEqual(await instances(again, service), []);
    } finally {
      agent.proc.kill('SIGKILL');
    }
  });

  it('re-registers when etcd restarts and the lease is gone', async () => {
    let etcd: EtcdCluster | undefined;
    try {
      etcd = await startEtcd();
      const gateway = await startGateway({ ETCD_ENDPOINTS: etcd.endpoints.join(','), ETCD_PREFIX: `/agent-test-${process.pid}` });
      const service = serviceName('etcd');
      const agent = startAgent([
        'run',
        '--gateway',
        gateway.url,
        '--service',
        service,
        '--address',
        '127.0.0.1',
        '--port',
        '7002',
        '--ttl',
        '2',
      ]);
      try {
        const first = await until('the registration', async () => (await instances(gateway, service))[0], undefined, agent);
        await etcd.restart(0);
        // The restart keeps leases (etcd re-extends them); revoking them is losing them.
        const leases = (await etcd.ctl(['lease', 'list'])).match(/\b[0-9a-f]{8,}\b/g) ?? [];
        for (const lease of leases) await etcd.ctl(['lease', 'revoke', lease]).catch(() => undefined);
        const again = await until(
          'the re-registration',
          async () => {
            const now = (await instances(gateway, service).catch(() => []))[0];
            return now !== undefined && now.registeredAt !== first.registeredAt ? now : undefined;
          },
          20_000,
        );
        assert.equal(again.id, '127.0.0.1:7002');
        assert.equal(agent.proc.exitCode, null, agent.stderr());
        await logged(agent, /re-registered/);
        agent.proc.kill('SIGTERM');
        assert.equal((await agent.exit()).code, 0);
        assert.deepEqual(await instances(gateway, service), []);
      } finally {
        agent.proc.kill('SIGKILL');
        await gateway.stop();
      }
    } finally {
      await etcd?.close();
    }
  });
});
