// discovery-agent runs CMD in a process group of its own and signals the group: a shell CMD's
// children get the signal too, and none outlives CMD (a container's PID 1 could not reap them).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, startGateway, type TestGateway } from './helpers/gateway.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Running, as opposed to gone or a zombie waiting for a parent that will never reap it. */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('discovery-agent and the process group of CMD', { timeout: 60_000 }, () => {
  let gw: TestGateway;
  let dir: string;
  const agents: ChildProcess[] = [];

  before(async () => {
    gw = await startGateway();
    dir = await mkdtemp(join(tmpdir(), 'agent-pgrp-'));
  });
  after(async () => {
    for (const agent of agents) agent.kill('SIGKILL');
    await gw?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Starts the agent around a shell that starts `sleep 300` in the background and records its pid. */
  async function agentAroundShell(
    id: string,
    script: string,
    waitForRegistration = true,
  ): Promise<{ agent: ChildProcess; grandchild: number; stderr: () => string }> {
    const pidFile = join(dir, `${id}.pid`);
    const agent = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/agent/main.ts',
        'run',
        '--gateway',
        gw.base,
        '--service',
        'pgrp',
        '--id',
        id,
        '--address',
        '127.0.0.1',
        '--port',
        '1',
        '--',
        'sh',
        '-c',
        `sleep 300 & echo $! > ${pidFile}; ${script}`,
      ],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    agents.push(agent);
    let stderr = '';
    agent.stderr!.on('data', (chunk) => (stderr += chunk));
    if (waitForRegistration) {
      await eventually(async () => (await gw.request('GET', `/services/pgrp/instances/${id}`)).status === 200, 20_000, `${id} registered`);
    }
    const grandchild = Number(
      await eventually(async () => (await readFile(pidFile, 'utf8').catch(() => '')).trim(), 10_000, 'the pid file'),
    );
    return { agent, grandchild, stderr: () => stderr };
  }

  it("SIGTERM to the agent reaches the shell CMD's children: none outlives it", async () => {
    const { agent, grandchild, stderr } = await agentAroundShell('term', 'wait');
    assert.ok(await alive(grandchild), 'the background sleep runs');
    agent.kill('SIGTERM');
    const [code] = (await once(agent, 'exit', { signal: AbortSignal.timeout(15_000) })) as [number | null];
    assert.equal(code, 143, stderr());
    await eventually(async () => !(await alive(grandchild)), 5_000, 'the background sleep to end');
    assert.equal((await gw.request('GET', '/services/pgrp/instances/term')).status, 404);
  });

  it('a shell CMD that exits by itself leaves no children behind', async () => {
    const { agent, grandchild, stderr } = await agentAroundShell('exit', 'exit 3', false);
    const [code] = (await once(agent, 'exit', { signal: AbortSignal.timeout(15_000) })) as [number | null];
    assert.equal(code, 3, stderr());
    await eventually(async () => !(await alive(grandchild)), 5_000, 'the background sleep to end');
  });
});
