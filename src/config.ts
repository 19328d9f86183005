// Environment -> one typed, validated, frozen Config. Only main.ts reads process.env;
// everything else receives a Config.
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { DEFAULT_TTL_SECONDS, MAX_PORT, MAX_TTL_SECONDS, WRITE_VISIBLE_TIMEOUT_MS } from './rules.ts';
import type { EtcdStoreOptions } from './registry/store/etcd.ts';

const Int = (min: number, max: number) => Type.String({ pattern: '^[0-9]+$', description: `an integer from ${min} to ${max}`, min, max });
const Bool = Type.Union([Type.Literal('true'), Type.Literal('false'), Type.Literal('1'), Type.Literal('0')], {
  description: 'true or false',
});
/** One or more DNS labels (letters, digits, inner hyphens), an optional trailing dot. */
const DNS_DOMAIN_PATTERN =
  '^(?=.{1,200}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\\.?$';
const Path = Type.String({ minLength: 1, description: 'a file path' });

/** Every setting, as the environment spells it (all optional strings). */
const EnvSchema = Type.Object({
  PORT: Type.Optional(Int(0, MAX_PORT)),
  HOST: Type.Optional(Type.String({ minLength: 1 })),
  ETCD_ENDPOINTS: Type.Optional(
    Type.String({ pattern: '^\\s*https?://[^,\\s]+(\\s*,\\s*https?://[^,\\s]+)*\\s*$', description: 'comma-separated http(s):// URLs' }),
  ),
  ETCD_PREFIX: Type.Optional(
    Type.String({ pattern: '^/[^\\s]*[^/\\s]$|^/[^/\\s]$', description: 'a key prefix starting with / and not ending with /' }),
  ),
  ETCD_USERNAME: Type.Optional(Type.String({ minLength: 1 })),
  ETCD_PASSWORD: Type.Optional(Type.String()),
  ETCD_CA_FILE: Type.Optional(Path),
  ETCD_CERT_FILE: Type.Optional(Path),
  ETCD_KEY_FILE: Type.Optional(Path),
  ETCD_TIMEOUT_MS: Type.Optional(Int(100, 60000)),
  TLS_CERT_FILE: Type.Optional(Path),
  TLS_KEY_FILE: Type.Optional(Path),
  AUTH_TOKENS_FILE: Type.Optional(Path),
  AUTH_METRICS: Type.Optional(Bool),
  LOG_LEVEL: Type.Optional(
    Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { description: 'fatal, error, warn, info, debug, trace or silent' },
    ),
  ),
  REQUEST_LOG: Type.Optional(Bool),
  RATE_LIMIT_MAX: Type.Optional(Int(1, 10_000_000)),
  SSE_MAX_STREAMS: Type.Optional(Int(1, 1_000_000)),
  SSE_KEEPALIVE_SECONDS: Type.Optional(Int(1, 3600)),
  SSE_BUFFER_BYTES: Type.Optional(Int(1024, 1 << 30)),
  SSE_MEMORY_BUDGET_BYTES: Type.Optional(Int(1 << 20, 2 ** 40)),
  SSE_STALL_SECONDS: Type.Optional(Int(1, 86_400)),
  EVENT_HISTORY: Type.Optional(Int(100, 10_000_000)),
  CORS_ORIGINS: Type.Optional(Type.String({ minLength: 1 })),
  DEFAULT_TTL_SECONDS: Type.Optional(Int(0, MAX_TTL_SECONDS)),
  CACHE_MAX_BYTES: Type.Optional(Int(65_536, 2 ** 40)),
  SHUTDOWN_GRACE_SECONDS: Type.Optional(Int(1, 3600)),
  TRUST_PROXY: Type.Optional(Type.String({ minLength: 1 })),
  DNS_PORT: Type.Optional(Int(0, 65535)),
  DNS_HOST: Type.Optional(Type.String({ minLength: 1 })),
  DNS_DOMAIN: Type.Optional(Type.String({ pattern: DNS_DOMAIN_PATTERN, description: 'a domain name such as discovery or sd.example.com' })),
  DNS_TTL_SECONDS: Type.Optional(Int(0, 86400)),
  DNS_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
});
type Env = Static<typeof EnvSchema>;

export interface Config {
  port: number;
  host: string;
  /** The etcd store's options, with certificate files as paths (createStore reads each once). */
  store: { kind: 'memory' } | ({ kind: 'etcd'; caFile?: string; certFile?: string; keyFile?: string } & Omit<EtcdStoreOptions, 'tls'>);
  prefix: string;
  tls?: { certFile: string; keyFile: string };
  authTokensFile?: string;
  authMetrics: boolean;
  logLevel: string;
  requestLog: boolean;
  rateLimitMax?: number;
  sseMaxStreams: number;
  sseKeepAliveSeconds: number;
  /** Bytes a stream may have queued behind what its client has not read (live changes, and data of its own; shared snapshots and replays aside) before the gateway closes it. */
  sseBufferBytes: number;
  /** Bytes all streams together may hold for data their clients have not read; past it new streams are refused. */
  sseMemoryBudgetBytes: number;
  /** A stream whose client has taken nothing for this long while data waits is closed. */
  sseStallSeconds: number;
  /** Recent changes kept in memory for resuming streams without a store read. */
  eventHistory: number;
  /** `*`, a list of origins, or undefined (no CORS headers). */
  corsOrigins?: '*' | string[];
  defaultTtlSeconds: number;
  /** Bytes of rendered discovery answers kept ready (LRU). */
  cacheMaxBytes: number;
  shutdownGraceSeconds: number;
  /**
   * How long requests in flight may take to finish after SIGTERM before their
   * connections are cut: its store calls (two deadlines: lease grant and txn), then the write's wait for the
   * watch to bring it back, plus a margin, so an applied write is always answered.
   */
  drainMs: number;
  /**
   * One deadline for a whole write request (registration, heartbeat, deregistration,
   * batch), whatever store calls it retries inside: two store call deadlines.
   */
  writeDeadlineMs: number;
  /**
   * fastify's trustProxy: which peers may tell the client's address in
   * X-Forwarded-For (req.ip, the rate limit's key). false: none (the socket address).
   */
  trustProxy: boolean | number | string[];
  /** The DNS interface (src/dns/), when DNS_PORT is set. */
  dns?: DnsConfig;
}

export interface DnsConfig {
  /** 0: a free port (tests). */
  port: number;
  host: string;
  /** Lowercase, without a trailing dot. */
  domain: string;
  ttlSeconds: number;
  /** The bearer token whose read rights DNS answers with (with access control on). */
  token?: string;
}

/** Time past the slowest write left for the answer to leave (see Config.drainMs). */
const DRAIN_MARGIN_MS = 1000;
/** Store calls the slowest write makes one after the other (a registration: lease grant, txn). */
const STORE_CALLS_PER_WRITE = 2;
/** The store call deadline of the embedded store, which answers at once. */
const MEMORY_STORE_DEADLINE_MS = 0;
/** proxy-addr's names for address ranges (fastify's trustProxy accepts them in a list). */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An address, a CIDR range (address/prefix length) or a proxy-addr range name. */
function isProxyAddress(text: string): boolean {
  if (PROXY_RANGE_NAMES.has(text)) return true;
  const [address, bits, extra] = text.split('/');
  const family = isIP(address ?? '');
  if (!family || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^[0-9]{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

/** TRUST_PROXY: off (unset or false), true (every peer), a hop count, or a list of addresses and CIDRs. */
function parseTrustProxy(text: string | undefined): boolean | number | string[] | undefined {
  if (text === undefined || text === 'false') return false;
  if (text === 'true') return true;
  if (/^[0-9]{1,2}$/.test(text)) return Number(text);
  const list = text.split(',').map((s) => s.trim());
  return list.every(isProxyAddress) ? list : undefined;
}

const DEFAULT_ETCD_TIMEOUT_MS = 5000;
const DEFAULT_SHUTDOWN_GRACE_SECONDS = 15;

export class ConfigError extends Error {}

/** A file a setting names; a missing or unreadable one stops the start naming the setting. */
export function readSettingFile(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${variable}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Validates the environment; throws a ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const raw: Record<string, string> = {};
  for (const key of Object.keys(EnvSchema.properties)) {
    const v = env[key];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  const int = (v: string | undefined, dflt: number) => (v === undefined ? dflt : Number(v));
  const problems = [...Value.Errors(EnvSchema, raw)].map(
    (e) => `${e.path.slice(1)}: ${JSON.stringify(raw[e.path.slice(1)])} is not ${e.schema.description ?? 'valid'}`,
  );
  for (const [key, schema] of Object.entries(EnvSchema.properties)) {
    const s = schema as { min?: number; max?: number };
    const v = raw[key];
    if (v !== undefined && s.min !== undefined && /^[0-9]+$/.test(v) && (Number(v) < s.min || Number(v) > s.max!)) {
      problems.push(`${key}: ${v} is out of range ${s.min}..${s.max}`);
    }
  }
  const e = raw as Env;
  if (e.ETCD_USERNAME && e.ETCD_PASSWORD === undefined) problems.push('ETCD_PASSWORD: must be set with ETCD_USERNAME');
  if (!!e.TLS_CERT_FILE !== !!e.TLS_KEY_FILE) problems.push('TLS_CERT_FILE/TLS_KEY_FILE: set both or neither');
  // A renamed setting must not be ignored without a word.
  if (env.CACHE_MAX_SERVICES) problems.push('CACHE_MAX_SERVICES: replaced by CACHE_MAX_BYTES (rendered answers are bounded in bytes)');
  if (!!e.ETCD_CERT_FILE !== !!e.ETCD_KEY_FILE) problems.push('ETCD_CERT_FILE/ETCD_KEY_FILE: set both or neither');
  const trustProxy = parseTrustProxy(e.TRUST_PROXY);
  if (trustProxy === undefined)
    problems.push(
      `TRUST_PROXY: ${JSON.stringify(e.TRUST_PROXY)} is not true, false, a hop count (0 to 99) or a comma-separated list of addresses and CIDRs`,
    );
  if (e.DNS_HOST !== undefined && !isIP(e.DNS_HOST))
    problems.push(`DNS_HOST: ${JSON.stringify(e.DNS_HOST)} is not an IP address to listen on`);
  const storeDeadlineMs = e.ETCD_ENDPOINTS ? int(e.ETCD_TIMEOUT_MS, DEFAULT_ETCD_TIMEOUT_MS) : MEMORY_STORE_DEADLINE_MS;
  // A registration makes two store calls (lease grant, then the guarded txn).
  const drainMs = STORE_CALLS_PER_WRITE * storeDeadlineMs + WRITE_VISIBLE_TIMEOUT_MS + DRAIN_MARGIN_MS;
  const grace = int(e.SHUTDOWN_GRACE_SECONDS, DEFAULT_SHUTDOWN_GRACE_SECONDS);
  if (grace * 1000 <= drainMs)
    problems.push(
      `SHUTDOWN_GRACE_SECONDS: ${grace} is not above the drain of ${drainMs / 1000} s (${STORE_CALLS_PER_WRITE} × ETCD_TIMEOUT_MS plus ${(WRITE_VISIBLE_TIMEOUT_MS + DRAIN_MARGIN_MS) / 1000} s)`,
    );
  if (problems.length) throw new ConfigError(`invalid configuration:\n  ${[...new Set(problems)].join('\n  ')}`);

  const bool = (v: string | undefined) => v === 'true' || v === '1';
  const cors = e.CORS_ORIGINS?.trim();
  return Object.freeze({
    port: int(e.PORT, 8080),
    host: e.HOST ?? '0.0.0.0',
    store: e.ETCD_ENDPOINTS
      ? {
          kind: 'etcd' as const,
          endpoints: e.ETCD_ENDPOINTS.split(',').map((s) => s.trim()),
          username: e.ETCD_USERNAME,
          password: e.ETCD_PASSWORD,
          caFile: e.ETCD_CA_FILE,
          certFile: e.ETCD_CERT_FILE,
          keyFile: e.ETCD_KEY_FILE,
          callTimeoutMs: int(e.ETCD_TIMEOUT_MS, DEFAULT_ETCD_TIMEOUT_MS),
        }
      : { kind: 'memory' as const },
    prefix: e.ETCD_PREFIX ?? '/services',
    tls: e.TLS_CERT_FILE && e.TLS_KEY_FILE ? { certFile: e.TLS_CERT_FILE, keyFile: e.TLS_KEY_FILE } : undefined,
    authTokensFile: e.AUTH_TOKENS_FILE,
    authMetrics: bool(e.AUTH_METRICS),
    logLevel: e.LOG_LEVEL ?? 'info',
    requestLog: e.REQUEST_LOG === undefined ? true : bool(e.REQUEST_LOG),
    rateLimitMax: e.RATE_LIMIT_MAX === undefined ? undefined : Number(e.RATE_LIMIT_MAX),
    sseMaxStreams: int(e.SSE_MAX_STREAMS, 10_000),
    sseKeepAliveSeconds: int(e.SSE_KEEPALIVE_SECONDS, 15),
    sseBufferBytes: int(e.SSE_BUFFER_BYTES, 1 << 20),
    sseMemoryBudgetBytes: int(e.SSE_MEMORY_BUDGET_BYTES, 256 << 20),
    sseStallSeconds: int(e.SSE_STALL_SECONDS, 60),
    eventHistory: int(e.EVENT_HISTORY, 10_000),
    corsOrigins:
      cors === undefined
        ? undefined
        : cors === '*'
          ? '*'
          : cors
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean),
    defaultTtlSeconds: int(e.DEFAULT_TTL_SECONDS, DEFAULT_TTL_SECONDS),
    cacheMaxBytes: int(e.CACHE_MAX_BYTES, 64 * 1024 * 1024),
    shutdownGraceSeconds: grace,
    drainMs,
    writeDeadlineMs: STORE_CALLS_PER_WRITE * int(e.ETCD_TIMEOUT_MS, DEFAULT_ETCD_TIMEOUT_MS),
    trustProxy: trustProxy!,
    dns:
      e.DNS_PORT === undefined
        ? undefined
        : {
            port: Number(e.DNS_PORT),
            host: e.DNS_HOST ?? '127.0.0.1',
            domain: (e.DNS_DOMAIN ?? 'discovery').toLowerCase().replace(/\.$/, ''),
            ttlSeconds: int(e.DNS_TTL_SECONDS, 5),
            token: e.DNS_TOKEN,
          },
  });
}
