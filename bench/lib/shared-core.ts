// Two servers on one core at the same time, each under its own wrk on the other
// core. The scheduler shares the core between them, so whatever the host does to
// that core in a round it does to both at once; their CPU time per answer is
// compared, not their rates one after the other. On the noisy 2-core machine of
// BENCHMARKS.md this ratio moved by a few per cent between rounds where adjacent
// runs of one server, one after the other, moved by up to 90%.
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

/** Unpinned again, whether or not the process is still there. */
function unpin(pid: number): void {
  try {
    pinTo(pid, undefined);
  } catch {
    // gone: nothing to unpin
  }
}

/** Nanoseconds the process's threads have run (schedstat: finer than the clock ticks of /proc/<pid>/stat). */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended since the listing
    }
  }
  return ns;
}

export interface SharedCoreRound {
  /** µs of CPU per answer. */
  aUs: number;
  bUs: number;
  /** b's CPU per answer over a's: above 1, a answers for less CPU. */
  ratio: number;
  /** Answers wrk counted as failed (a status other than 2xx/3xx, or a socket error), both sides: at most 1% of the answers. */
  failed: number;
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
  try {
    pinTo(a.pid, SERVER_CORE);
    pinTo(b.pid, SERVER_CORE);
    for (let r = 0; r < o.rounds; r++) {
      const [a0, b0] = [cpuNs(a.pid), cpuNs(b.pid)];
      const [ra, rb] = await Promise.all([load(a.url), load(b.url)]);
      const [a1, b1] = [cpuNs(a.pid), cpuNs(b.pid)];
      const tooMany = (s: { ok: number; errors: number }) => s.ok === 0 || s.errors > s.ok / 100;
      if (tooMany(ra) || tooMany(rb))
        throw new Error(`shared-core round: ${ra.ok} and ${rb.ok} answers, ${ra.errors} and ${rb.errors} failed`);
      const aUs = (a1 - a0) / 1000 / ra.ok;
      const bUs = (b1 - b0) / 1000 / rb.ok;
      out.push({ aUs, bUs, ratio: bUs / aUs, failed: ra.errors + rb.errors });
    }
  } finally {
    unpin(a.pid);
    unpin(b.pid);
  }
  return out;
}
