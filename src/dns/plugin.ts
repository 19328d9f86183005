// The DNS interface as a part of the app: another front end beside the HTTP
// routes, asking the same registry. Off unless DNS_PORT is set; with access
// control on, it answers with the rights of the token DNS_TOKEN names and stays
// off (saying why) without one. It listens when the app is ready, so that a port
// it cannot have stops the start like a bad setting, and closes with the app.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Counter } from 'prom-client';
import type { TokenSet } from '../auth/tokens.ts';
import { ConfigError } from '../config.ts';
import { ZoneNames } from './names.ts';
import { DnsServer } from './server.ts';
import { Zone } from './zone.ts';

/** Whether DNS is on and where (GET /health). */
export interface DnsStatus {
  enabled: boolean;
  host?: string;
  port?: number;
  domain?: string;
  /** Why it is off although DNS_PORT is set. */
  reason?: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    dns: DnsStatus;
  }
}

/** Question types counted by name in discovery_dns_queries_total; any other is `other` (a bounded label set). */
const COUNTED_TYPES = new Set(['A', 'AAAA', 'SRV', 'SOA', 'ANY', 'NS', 'PTR', 'TXT', 'MX', 'CNAME', 'HTTPS', 'SVCB', 'none']);

/** Counts per (qtype, rcode) through prom-client's children, found once per pair: no label hashing per query. */
function queryCounter(counter: Counter<'qtype' | 'rcode'>): (qtype: string, rcode: string) => void {
  const children = new Map<string, { inc(): void }>();
  return (qtype, rcode) => {
    const type = COUNTED_TYPES.has(qtype) ? qtype : 'other';
    const key = `${type} ${rcode}`;
    let child = children.get(key);
    if (!child) children.set(key, (child = counter.labels(type, rcode)));
    child.inc();
  };
}

async function dns(app: FastifyInstance, opts: { tokens?: TokenSet }): Promise<void> {
  const { config, discovery, metrics } = app.gateway;
  const settings = config.dns;
  if (!settings) return void app.decorate('dns', { enabled: false });
  let canRead: ((service: string) => boolean) | undefined;
  if (opts.tokens) {
    if (!settings.token) {
      const reason = 'access control is on (AUTH_TOKENS_FILE) and DNS_TOKEN names no token to answer with';
      app.log.warn(`DNS_PORT is set but DNS stays off: ${reason}`);
      return void app.decorate('dns', { enabled: false, reason });
    }
    const token = opts.tokens.lookup(settings.token);
    if (!token) throw new ConfigError('DNS_TOKEN: not a token of AUTH_TOKENS_FILE');
    canRead = token.canRead;
  }

  const zone = new Zone(new ZoneNames(settings.domain), discovery, { ttlSeconds: settings.ttlSeconds, canRead });
  const count = queryCounter(metrics.dnsQueries);
  const server = new DnsServer(zone, {
    answered: count,
    failed: (err) => app.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'DNS answer failed'),
  });
  const status: DnsStatus = { enabled: false, domain: settings.domain };
  app.decorate('dns', status);
  app.addHook('onReady', async () => {
    try {
      status.port = await server.listen(settings.host, settings.port);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
      throw new ConfigError(`DNS_PORT: cannot listen on ${settings.host}:${settings.port} (${code})`);
    }
    Object.assign(status, { enabled: true, host: settings.host });
    app.log.info({ host: settings.host, port: status.port, domain: settings.domain }, 'DNS interface listening (UDP and TCP)');
  });
  app.addHook('onClose', () => server.close());
}

export default fp(dns, { name: 'dns' });
