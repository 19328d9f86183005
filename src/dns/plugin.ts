// The DNS interface as a part of the app: another front end beside the HTTP
// routes, asking the same registry. Off unless DNS_PORT is set; with access
// control on, it answers with the rights of the token DNS_TOKEN names and stays
// off (saying why) without one. It listens when the app is ready, so that a port
// it cannot have stops the start like a bad setting, and closes with the app.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { TokenSet } from '../auth/tokens.ts';
import { ConfigError } from '../config.ts';
import type { GatewayEvents } from '../events.ts';
import { ZoneNames } from './names.ts';
import { DnsServer } from './server.ts';
import { PreparedAnswers, type ChangeFeed } from './prepared.ts';
import { Zone, type ServiceRecords } from './zone.ts';

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

interface DnsOptions {
  tokens?: TokenSet;
  events: GatewayEvents;
  /** The registry's change listeners: each change drops the encoded answers of its service. */
  changes: ChangeFeed;
}

async function dns(app: FastifyInstance, opts: DnsOptions): Promise<void> {
  const { config, discovery } = app.gateway;
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

  const prepared = new PreparedAnswers<ServiceRecords>(opts.changes);
  const zone = new Zone(new ZoneNames(settings.domain), discovery, { ttlSeconds: settings.ttlSeconds, canRead }, prepared);
  const server = new DnsServer(zone, opts.events);
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
