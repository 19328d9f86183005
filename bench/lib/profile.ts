// --profile: the gateway children run with --cpu-prof; this prints where their
// CPU time went (self time per function, top entries), to find the hot path.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

export function summarizeProfiles(dir: string, top = 15): string {
  const out: string[] = [];
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return `no CPU profiles in ${dir}`;
  }
  for (const file of files) {
    const p = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
    const self = new Map<string, number>();
    let total = 0;
    p.samples.forEach((id, i) => {
      const f = frames.get(id)!;
      const where = f.url.replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, 'dist/');
      const key = `${f.functionName || '(anonymous)'} ${where}${where ? `:${f.lineNumber + 1}` : ''}`;
      const dt = p.timeDeltas[i] ?? 0;
      self.set(key, (self.get(key) ?? 0) + dt);
      total += dt;
    });
    out.push(`${join(dir, file)} (self time, ${(total / 1e6).toFixed(1)} s sampled):`);
    for (const [key, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top))
      out.push(`  ${((t / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
  return out.join('\n');
}
