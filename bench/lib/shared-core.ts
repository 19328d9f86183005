// Two servers on one core at the same time, each under its own wrk on the other
// core. The scheduler shares the core between them, so whatever the host does to
// that core in a round it does to both at once; their CPU time per answer is
// compared, not their rates one after the other. On the noisy 2-core machine of
// BENCHMARKS.md this ratio moves by a few per cent between rounds where adjacent
// 10 s runs of one server moved by 40%.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { plainWrk } from './wrk.ts';

/** The core the servers share (the second, when there is one) and the core wrk runs on. */
export const SERVER_CORE = cpus().length > 1 ? 1 : 0;
export const CLIENT_CORE = 0;

/** Pin every thread of a process to one core (`undefined`: any core again). */
export function pinTo(pid: number, core: number | undefined): void {
  const cores = core === undefined ? `0-${cpus().length - 1}` : String(core);
  execFileSync('taskset', ['-a', '-p', '-c', cores, String(pid)], { stdio: 'ignore' });
}

/** Nanoseconds the process's threads have run (schedstat: finer than the clock ticks of /proc/<pid>/stat). */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
  }
  return ns;
}

export interface SharedCoreRound {
  /** µs of CPU per answer. */
  aUs: number;
  bUs: number;
  /** b's CPU per answer over a's: above 1, a answers for less CPU. */
  ratio: number;
}

/**
 * `rounds` runs of `durationS` seconds, both servers loaded at once (plain wrk, one
 * thread each) while pinned to SERVER_CORE; they are unpinned afterwards.
 */
export async function sharedCoreRounds(
  a: { pid: number; url: string },
  b: { pid: number; url: string },
  o: { rounds: number; durationS: number; connections: number },
): Promise<SharedCoreRound[]> {
  const load = (url: string) => plainWrk(url, { threads: 1, connections: o.connections, durationS: o.durationS, core: CLIENT_CORE });
  const out: SharedCoreRound[] = [];
  pinTo(a.pid, SERVER_CORE);
  pinTo(b.pid, SERVER_CORE);
  try {
    for (let r = 0; r < o.rounds; r++) {
      const [a0, b0] = [cpuNs(a.pid), cpuNs(b.pid)];
      const [ra, rb] = await Promise.all([load(a.url), load(b.url)]);
      const aUs = (cpuNs(a.pid) - a0) / 1000 / ra.ok;
      const bUs = (cpuNs(b.pid) - b0) / 1000 / rb.ok;
      if (ra.errors || rb.errors) throw new Error(`shared-core round: ${ra.errors} and ${rb.errors} failed answers`);
      out.push({ aUs, bUs, ratio: bUs / aUs });
    }
  } finally {
    pinTo(a.pid, undefined);
    pinTo(b.pid, undefined);
  }
  return out;
}
