// The driver's HTTP client: node:http with a keep-alive pool per replica (cheaper
// than fetch at a few hundred requests a second), every request bounded in time
// from when it was made, also while it waits in the pool for a socket.
import http from 'node:http';

/** Milliseconds since the run started: every time in the run log. */
let t0 = performance.now();
export const now = (): number => performance.now() - t0;
export function restartClock(): void {
  t0 = performance.now();
}

export interface Reply {
  /** 0 when no answer came (refused, reset, timed out). */
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 48 });

export function request(base: string, method: string, path: string, body?: unknown, timeoutMs = 5000): Promise<Reply> {
  return new Promise((resolveOnce) => {
    // Not req.setTimeout: it starts once a socket is assigned. Behind a replica that holds its
    // requests (cut from etcd), the rest queue in the pool; answered much later, a heartbeat
    // "sent" long before would claim a renewal at a time the gateway had not even received it.
    const timer = setTimeout(() => req.destroy(new Error('timeout')), timeoutMs);
    const resolve = (reply: Reply) => {
      clearTimeout(timer);
      resolveOnce(reply);
    };
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      base + path,
      {
        method,
        agent,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        res.on('error', () => resolve({ status: 0, headers: {}, body: '' }));
      },
    );
    req.on('error', () => resolve({ status: 0, headers: {}, body: '' }));
    req.end(payload);
  });
}

export function revisionOf(r: Reply): number {
  return Number(r.headers['x-registry-revision'] ?? NaN);
}

export function json<T>(r: Reply): T | undefined {
  try {
    return JSON.parse(r.body) as T;
  } catch {
    return undefined;
  }
}

export function closeClients(): void {
  agent.destroy();
}
