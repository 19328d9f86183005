// A strict parser of the Prometheus text exposition format 0.0.4 (what
// prom-client serves and Prometheus scrapes), for tests that read /metrics as
// Prometheus would, not by substring. It rejects what Prometheus rejects:
// malformed lines, a # TYPE after its family's samples, a family split in two,
// a duplicate series; and checks histograms (cumulative buckets, le="+Inf"
// equal to _count, _sum and _count present for every series).

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** The sample's own name: `x_bucket`, `x_sum`, `x_count` for a histogram `x`. */
  name: string;
  labels: Record<string, string>;
  value: number;
  timestamp?: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES: Record<MetricType, string[]> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
};

export class ParseError extends Error {
  constructor(line: number, message: string, text: string) {
    super(`metrics line ${line}: ${message}: ${text.slice(0, 160)}`);
  }
}

/** Families by name, in the order the text declares them. */
export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const finished = new Set<string>(); // families whose samples are over: no more may come
  let current: Family | undefined;
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: 'untyped', help: '', samples: [] }));
    return f;
  };
  const seen = new Set<string>();
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((line, i) => {
    const n = i + 1;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ''] = m as unknown as [string, string, string, string?];
      if (!NAME.test(name) || NAME.exec(name)![0] !== name) throw new ParseError(n, 'bad metric name', line);
      const f = family(name);
      if (kind === 'TYPE') {
        const type = rest.trim() as MetricType;
        if (!TYPES.has(type)) throw new ParseError(n, `unknown type "${type}"`, line);
        if (f.samples.length) throw new ParseError(n, `# TYPE after samples of ${name}`, line);
        if (f.type !== 'untyped') throw new ParseError(n, `second # TYPE for ${name}`, line);
        f.type = type;
      } else {
        if (f.help) throw new ParseError(n, `second # HELP for ${name}`, line);
        f.help = unescape(rest, false, n, line);
      }
      return;
    }
    const sample = parseSample(line, n);
    const f = ownerOf(families, sample.name) ?? family(sample.name);
    if (finished.has(f.name)) throw new ParseError(n, `samples of ${f.name} are not grouped together`, line);
    if (current && current !== f) finished.add(current.name);
    current = f;
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) throw new ParseError(n, 'duplicate series', line);
    seen.add(key);
    f.samples.push(sample);
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

/** The declared family a sample name belongs to (`x_bucket` belongs to histogram `x`). */
function ownerOf(families: Map<string, Family>, sampleName: string): Family | undefined {
  for (const f of families.values()) {
    for (const suffix of SUFFIXES[f.type]) if (sampleName === f.name + suffix) return f;
  }
  return undefined;
}

function parseSample(line: string, n: number): Sample {
  const nameMatch = NAME.exec(line);
  if (!nameMatch) throw new ParseError(n, 'no metric name', line);
  const name = nameMatch[0];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      if (line[i] === '}') {
        i++;
        break;
      }
      const lm = LABEL_NAME.exec(line.slice(i));
      if (!lm) throw new ParseError(n, 'bad label name', line);
      const label = lm[0];
      i += label.length;
      if (line.slice(i, i + 2) !== '="') throw new ParseError(n, `="..." expected after label ${label}`, line);
      i += 2;
      let raw = '';
      for (;;) {
        if (i >= line.length) throw new ParseError(n, 'unterminated label value', line);
        const ch = line[i++]!;
        if (ch === '"') break;
        raw += ch;
        if (ch === '\\') raw += line[i++] ?? '';
      }
      if (label in labels) throw new ParseError(n, `label ${label} twice`, line);
      labels[label] = unescape(raw, true, n, line);
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new ParseError(n, '"," or "}" expected', line);
    }
  }
  const rest = line.slice(i);
  const m = /^[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$/.exec(rest);
  if (!m) throw new ParseError(n, 'value expected', line);
  const value = parseValue(m[1]!);
  if (value === undefined) throw new ParseError(n, `bad value "${m[1]}"`, line);
  return m[2] === undefined ? { name, labels, value } : { name, labels, value, timestamp: Number(m[2]) };
}

/** As Prometheus reads values (Go's ParseFloat): NaN and Inf in any case (prom-client writes "Nan"). */
function parseValue(s: string): number | undefined {
  const lower = s.toLowerCase();
  if (lower === 'nan') return NaN;
  if (['inf', '+inf', 'infinity', '+infinity'].includes(lower)) return Infinity;
  if (lower === '-inf' || lower === '-infinity') return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

/** HELP text escapes \\ and \n; label values also \". */
function unescape(raw: string, labelValue: boolean, n: number, line: string): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const next = raw[++i];
    if (next === 'n') out += '\n';
    else if (next === '\\') out += '\\';
    else if (next === '"' && labelValue) out += '"';
    else if (labelValue) throw new ParseError(n, `bad escape \\${next ?? ''}`, line);
    else out += `\\${next ?? ''}`; // HELP: an unknown escape stays as it is
  }
  return out;
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let h = series.get(key);
    if (!h) series.set(key, (h = { buckets: [] }));
    if (s.name === `${f.name}_bucket`) {
      const bound = le === undefined ? undefined : parseValue(le);
      if (bound === undefined) throw new Error(`${f.name}_bucket without a valid le label`);
      h.buckets.push([bound, s.value]);
    } else if (s.name === `${f.name}_sum`) h.sum = s.value;
    else if (s.name === `${f.name}_count`) h.count = s.value;
  }
  for (const [key, h] of series) {
    const where = `${f.name}${key}`;
    if (h.sum === undefined || h.count === undefined) throw new Error(`${where}: _sum or _count missing`);
    h.buckets.sort((a, b) => a[0] - b[0]);
    const inf = h.buckets.at(-1);
    if (!inf || inf[0] !== Infinity) throw new Error(`${where}: no le="+Inf" bucket`);
    if (inf[1] !== h.count) throw new Error(`${where}: le="+Inf" ${inf[1]} != _count ${h.count}`);
    for (let i = 1; i < h.buckets.length; i++) {
      if (h.buckets[i]![1] < h.buckets[i - 1]![1]) throw new Error(`${where}: buckets are not cumulative`);
    }
  }
}

/** Sum of the samples named `sampleName` whose labels include `labels`. */
export function sumOf(families: Map<string, Family>, sampleName: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== sampleName) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) total += s.value;
    }
  }
  return total;
}

/** The label names a family's samples carry (le and quantile excluded). */
export function labelNamesOf(f: Family): Set<string> {
  const names = new Set<string>();
  for (const s of f.samples) for (const k of Object.keys(s.labels)) if (k !== 'le' && k !== 'quantile') names.add(k);
  return names;
}
