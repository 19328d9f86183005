// The soak harness and its checker kept honest in CI: one minute of churn,
// heartbeats, subscribers and readers against 3 gateways over a 3-member etcd
// cluster, with one fault of each process kind and one network fault (a gateway
// link to a member blackholed), checked against etcd's own history.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { SMOKE_FAULT_KINDS } from '../soak/observations.ts';
import { runSoak } from '../soak/run.ts';

it('a one-minute soak with one fault of each process kind and a network partition keeps every promise', { timeout: 150_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'soak-smoke-'));
  let passed = false;
  try {
    const { result, summary, log } = await runSoak({ minutes: 1, seed: 17, replicas: 3, out, profile: 'smoke' });
    const injected = new Set(log.faults.filter((f) => !/^(skipped|failed)/.test(f.detail ?? '')).map((f) => f.kind));
    assert.deepEqual([...injected].sort(), [...SMOKE_FAULT_KINDS].sort(), `faults: ${JSON.stringify(log.faults)}`);
    assert.deepEqual(
      result.violations,
      [],
      `violations: ${JSON.stringify(result.violations.slice(0, 5))}; ` + JSON.stringify(summary.properties.filter((p) => p.violations)),
    );
    // The run did real work: the checks below would pass vacuously on an idle system.
    assert.ok(result.stats.deliveries > 1000, `deliveries ${result.stats.deliveries}`);
    assert.ok(result.stats.writesChecked > 100, `writes ${result.stats.writesChecked}`);
    assert.ok(result.stats.expiries > 0, `expiries ${result.stats.expiries}`);
    assert.ok(
      log.reads.some((r) => r.kind === 'blocking' && r.status === 200) &&
        log.reads.some((r) => r.kind === 'minRevision' && r.status === 200),
    );
    passed = true;
  } finally {
    // A failed run's report and gateway logs are what explains it: kept.
    if (passed) rmSync(out, { recursive: true, force: true });
    else console.error(`soak smoke failed: its report and logs are kept in ${out}`);
  }
});
