// The property-based API test (test/api-properties.test.ts) at bench size: 1,000
// generated requests per operation (valid and mutated, from openapi/openapi.json),
// every answer checked against the document. `npm test` runs the same test with a
// fixed seed and a few dozen requests per operation.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { underRow, type Scenario } from '../lib/table.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RUNS = 1000;

export const apiProperties: Scenario = {
  name: 'api-properties',
  title: `Generated requests (${RUNS} per operation) answered as the OpenAPI document says`,
  async run(ctx) {
    const runs = ctx.quick ? RUNS / 10 : RUNS;
    const t = performance.now();
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-timeout=1800000', 'test/api-properties.test.ts'], {
      cwd: ROOT,
      env: { ...process.env, API_PROPERTY_RUNS: String(runs) },
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)`, 'm').exec(run.stdout)?.[1] ?? NaN);
    const failed = count('fail');
    for (const line of run.stdout.split('\n').filter((l) => /Counterexample|not ok/.test(l))) ctx.note(line.trim());
    ctx.log(
      `${count('pass')} operations passed, ${failed} failed, ${runs} requests each, in ${((performance.now() - t) / 1000).toFixed(0)} s`,
    );
    return [
      underRow('operations with an undocumented answer', failed, 'operations', 1),
      underRow(`seconds for ${runs} requests per operation`, (performance.now() - t) / 1000, 's'),
    ];
  },
};
