// The gateway's log as tests read it: what buildApp writes to deps.logStream.

/** Log lines as the gateway writes them (one JSON object per line). */
export class LogCapture {
  readonly raw: string[] = [];
  readonly lines: Record<string, unknown>[] = [];
  write(chunk: string): void {
    this.raw.push(chunk);
    for (const line of chunk.split('\n')) if (line.trim()) this.lines.push(JSON.parse(line) as Record<string, unknown>);
  }
  requests(): Record<string, unknown>[] {
    return this.lines.filter((l) => l.msg === 'request');
  }
  count(msg: string): number {
    return this.lines.filter((l) => l.msg === msg).length;
  }
}
