// API.md's "Names and records", written once: the HTTP schemas, the key layout,
// token patterns and the agent's flags all check against these. No imports, so
// that the agent can use them without pulling in the gateway (node built-ins only).
import { isIP } from 'node:net';

/** Service name: 1–64 of a-z 0-9 . _ -, starting and ending with a letter or digit. */
export const SERVICE_NAME_PATTERN = '^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$';
/** Instance id: 1–128 of A-Z a-z 0-9 . _ : -, not "." or ".." (path segments). */
export const INSTANCE_ID_PATTERN = '^(?!\\.{1,2}$)[A-Za-z0-9._:-]{1,128}$';
/** A DNS host name: labels of letters, digits and inner hyphens, 253 characters at most. */
export const HOST_NAME_PATTERN =
  '^(?=.{1,253}\\.?$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\\.?$';
/** A token's service pattern: a service name, or a prefix of one followed by `*`. */
export const SERVICE_PATTERN_PATTERN = '^(?:[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?|[a-z0-9._-]{0,63}\\*)$';

const SERVICE_NAME = new RegExp(SERVICE_NAME_PATTERN);
const INSTANCE_ID = new RegExp(INSTANCE_ID_PATTERN);
const HOST_NAME = new RegExp(HOST_NAME_PATTERN);

export const MAX_TAGS = 32;
export const MAX_TAG_LENGTH = 64;
export const MAX_METADATA = 64;
export const MAX_METADATA_KEY_LENGTH = 128;
export const MAX_METADATA_VALUE_LENGTH = 512;
export const MAX_WEIGHT = 10_000;
export const MAX_TTL_SECONDS = 86_400;
/** etcd's default --max-txn-ops: a batch is one transaction. */
export const MAX_BATCH_OPS = 128;
/** A blocking query holds its answer this long at the most (and by default). */
export const MAX_WAIT_MS = 5 * 60_000;

/** How long a write waits for the gateway's watch to bring it back before answering anyway (the drain covers it: config.ts). */
export const WRITE_VISIBLE_TIMEOUT_MS = 3000;

export function isServiceName(name: string): boolean {
  return SERVICE_NAME.test(name);
}

export function isInstanceId(id: string): boolean {
  return INSTANCE_ID.test(id);
}

export function isHostName(name: string): boolean {
  return HOST_NAME.test(name);
}

/** The `host` format of addresses: an IP address that parses, or a DNS name (no colon). */
export function isHost(text: string): boolean {
  if (text.includes(':')) return isIP(text) === 6;
  if (/^\d+(\.\d+){3}$/.test(text)) return isIP(text) === 4;
  return true; // a DNS name: the schema's pattern checks its labels
}

/** An instance address as the gateway accepts it: an IP address, or a DNS host name. */
export function isAddress(text: string): boolean {
  return isHost(text) && (isIP(text) !== 0 || isHostName(text));
}
