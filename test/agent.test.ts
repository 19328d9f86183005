// discovery-agent end to end: the real gateway (embedded store, and etcd for the lease case),
// the agent as a real process, and CMD as a real process (a tiny HTTP server written to a
// temp dir) that records when it got SIGTERM and what the gateway said at that moment.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';

import {
  cleanUp,
  exitOf,
  instance,
  instances,
  launch,
  logged,
  makeCmd,
  ROOT,
  runArgs,
  serviceName,
  startAgent,
  startGateway,
  subscribe,
  tail,
  tempDir,
  until,
  type Gateway,
} from './helpers/agents.ts';

// ---------------------------------------------------------------------------------------------

after(cleanUp);

describe('discovery-agent against the gateway (embedded store)', { concurrency: 4 }, () => {
  let gateway: Gateway;
  before(async () => {
    gateway = await startGateway();
  });

  it('registers only once --check answers 2xx, with tags, metadata and weight', async () => {
    const service = serviceName('check');
    const cmd = await makeCmd({ CMD_LISTEN_AFTER_MS: '1500' });
    const agent = startAgent(
      runArgs(
        {
          gateway: gateway.url,
          service,
          address: '127.0.0.1',
          port: cmd.port,
          tag: ['http', 'v2'],
          meta: ['zone=eu-1', 'version=2.3.1'],
          weight: '42',
          check: `http://127.0.0.1:${cmd.port}/health`,
        },
        cmd.argv,
      ),
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
        runArgs({ gateway: gateway.url, service, id, address: '127.0.0.1', port: cmd.port, drain: '1' }, cmd.argv),
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
      runArgs({ gateway: gateway.url, service, address: '127.0.0.1', port: cmd.port, grace: '1' }, cmd.argv),
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
    const agent = startAgent(runArgs({ gateway: gateway.url, service, address: '127.0.0.1', port: cmd.port }, cmd.argv), cmd.env);
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
      runArgs(
        { gateway: gateway.url, service, address: '127.0.0.1', port: cmd.port, check: `http://127.0.0.1:${cmd.port}/health` },
        cmd.argv,
      ),
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
    const agent = startAgent(
      runArgs({ gateway: gateway.url, service: serviceName('enoent'), address: '127.0.0.1', port: '9' }, [
        '--',
        join(await tempDir(), 'no-such-command'),
      ]),
    );
    assert.equal((await agent.exit()).code, 127);
    assert.match(agent.stderr(), /no-such-command/);
  });

  it('without CMD keeps the registration past several TTLs and deregisters on SIGINT', async () => {
    const service = serviceName('sidecar');
    const token = 'not-a-real-secret-token';
    const agent = startAgent(runArgs({ gateway: gateway.url, service, address: 'sidecar.local', port: '7000', ttl: '2' }), {
      DISCOVERY_TOKEN: token,
    });
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
    const agent = startAgent(runArgs({ gateway: gateway.url, service, address: '127.0.0.1', port: '7004', ttl: '0' }));
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
    const tokensFile = join(await tempDir(), 'tokens.json');
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
    const ok = startAgent(runArgs({ gateway: gateway.url, service: allowed, address: '127.0.0.1', port: '7003' }), {
      DISCOVERY_TOKEN: secrets.agent,
    });
    await until('the registration', async () => (await instances(gateway, allowed))[0], undefined, ok);

    const refused = serviceName('auth-no');
    // --check: registers once CMD listens, so CMD has its SIGTERM handler by then.
    const cmd = await makeCmd();
    const no = startAgent(
      runArgs(
        {
          gateway: gateway.url,
          service: refused,
          address: '127.0.0.1',
          port: cmd.port,
          token: secrets.agent,
          check: `http://127.0.0.1:${cmd.port}/health`,
        },
        cmd.argv,
      ),
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
    const agent = startAgent(runArgs({ gateway: gateway.url, service, address: '127.0.0.1', port: '7001', ttl: '2' }));
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
      const agent = startAgent(runArgs({ gateway: gateway.url, service, address: '127.0.0.1', port: '7002', ttl: '2' }));
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
