// The README's quick start, run as written on a fresh gateway: the curl block is taken from
// README.md, run top to bottom in one bash (only the host is changed), and every command under a
// `# → STATUS fragment…fragment` comment must answer that status with those fragments, in order.
// So the quick start cannot rot: change an answer and this fails until the README says so.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './helpers/agents.ts';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

interface Step {
  readonly command: string;
  /** From the `# →` comment above the command, if any. */
  readonly expect?: { readonly status: number; readonly fragments: readonly string[] };
}

/** The quick start's commands with their expectations (a command may span lines: `\` or an open quote). */
function steps(block: string): Step[] {
  const out: Step[] = [];
  let expect: Step['expect'];
  let command = '';
  for (const line of block.split('\n')) {
    if (command === '' && (line.trim() === '' || line.startsWith('#'))) {
      const arrow = /^# → (\d{3})\s*(.*)$/.exec(line);
      if (arrow) expect = { status: Number(arrow[1]), fragments: arrow[2]!.split('…').filter((f) => f !== '') };
      continue;
    }
    command += `${line}\n`;
    const open = (command.match(/'/g)?.length ?? 0) % 2 === 1;
    if (!open && !line.endsWith('\\')) {
      out.push({ command, ...(expect ? { expect } : {}) });
      command = '';
      expect = undefined;
    }
  }
  return out;
}

/** Whether `text` holds the fragments in this order. */
function inOrder(text: string, fragments: readonly string[]): boolean {
  let at = 0;
  for (const fragment of fragments) {
    const found = text.indexOf(fragment, at);
    if (found === -1) return false;
    at = found + fragment.length;
  }
  return true;
}

describe("README's quick start", { timeout: 120_000 }, () => {
  let gw: TestGateway;
  before(async () => (gw = await startGateway()));
  after(async () => gw?.close());

  it('answers every command as its comment says, pasted top to bottom on a fresh gateway', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const block = /## Quick start with curl\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(block !== undefined, 'the quick start has a sh block');
    const all = steps(block.replaceAll('localhost:8080', gw.base.replace('http://', '')));
    assert.ok(all.filter((s) => s.expect).length >= 20, 'most commands say what they answer');
    // Each command is announced on the output; curl also writes its status to stderr (merged in
    // order), unless the command chose its own -w (the last -w wins), as the captures do.
    const script = [
      `curl() { command curl -sS -w '%{stderr}\\n@@status %{http_code}\\n' "$@"; }`,
      ...all.map((s, i) => `echo "@@step ${i}"\n${s.command}`),
    ].join('\n');
    const { stdout } = await promisify(execFile)('bash', ['-c', `{ ${script}\n} 2>&1`], { maxBuffer: 16 * 1024 * 1024 });
    const outputs = stdout.split(/^@@step \d+\n/m).slice(1);
    assert.equal(outputs.length, all.length);
    all.forEach((step, i) => {
      if (step.expect === undefined) return;
      const output = outputs[i]!;
      const status = Number(/^@@status (\d{3})$/m.exec(output)?.[1]);
      const body = output.replace(/^@@status \d{3}\n?/m, '');
      assert.equal(status, step.expect.status, `${step.command}answered:\n${output}`);
      assert.ok(
        inOrder(body, step.expect.fragments),
        `${step.command}expected ${JSON.stringify(step.expect.fragments)}, answered:\n${output}`,
      );
    });
  });
});
