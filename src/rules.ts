// API.md's "Names and records" and the waits it promises, written once: the HTTP
// schemas (and so the OpenAPI document), the key layout, token patterns, the
// registry and the agent's flags all read these, and the schemas' descriptions
// are built from them. No imports but node built-ins, so that the agent can use
// them without pulling in the gateway.
import { isIP } from 'node:net';

// Names and ids: path segments of the API and of the store's keys.

export const MAX_SERVICE_NAME_LENGTH = 64;
/** Service name: 1–64 of a-z 0-9 . _ -, starting and ending with a letter or digit. */
export const SERVICE_NAME_PATTERN = `^[a-z0-9]([a-z0-9._-]{0,${MAX_SERVICE_NAME_LENGTH - 2}}[a-z0-9])?$`;
export const SERVICE_NAME_RULE = `1–${MAX_SERVICE_NAME_LENGTH} of a-z 0-9 . _ -, starting and ending with a letter or digit`;

export const MAX_INSTANCE_ID_LENGTH = 128;
/** Instance id: 1–128 of A-Z a-z 0-9 . _ : -, not "." or ".." (path segments). */
export const INSTANCE_ID_PATTERN = `^(?!\\.{1,2}$)[A-Za-z0-9._:-]{1,${MAX_INSTANCE_ID_LENGTH}}$`;
export const INSTANCE_ID_RULE = `1–${MAX_INSTANCE_ID_LENGTH} of A-Z a-z 0-9 . _ : -, not "." or ".."`;

/** A token's service scope: a service name, or a prefix of one followed by `*` (`*` alone: every service). */
export const SERVICE_SCOPE_PATTERN = `^(?:${SERVICE_NAME_PATTERN.slice(1, -1)}|[a-z0-9._-]{0,${MAX_SERVICE_NAME_LENGTH - 1}}\\*)$`;

const SERVICE_NAME = new RegExp(SERVICE_NAME_PATTERN);
const INSTANCE_ID = new RegExp(INSTANCE_ID_PATTERN);

export function isServiceName(name: string): boolean {
  return SERVICE_NAME.test(name);
}

export function isInstanceId(id: string): boolean {
  return INSTANCE_ID.test(id);
}

// Addresses and ports.

export const MAX_ADDRESS_LENGTH = 253;
const HOST_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
/**
 * An instance address: the shape of an IPv6 address (no brackets), or of a DNS host
 * name (IPv4 addresses among them). The `host` format (isHost) then checks that what
 * looks like an IP address parses as one.
 */
export const ADDRESS_PATTERN = `^(?:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*|${HOST_LABEL}(?:\\.${HOST_LABEL})*\\.?)$`;
export const ADDRESS_RULE = 'IPv4, IPv6 (no brackets) or DNS host name';
const ADDRESS = new RegExp(ADDRESS_PATTERN);

/** The `host` format of addresses: an IP address that parses, or a DNS name (no colon). */
export function isHost(text: string): boolean {
  if (text.includes(':')) return isIP(text) === 6;
  if (/^\d+(\.\d+){3}$/.test(text)) return isIP(text) === 4;
  return true; // a DNS name: ADDRESS_PATTERN checks its labels
}

/** An instance address as the gateway accepts it (the schema's length, pattern and format at once). */
export function isAddress(text: string): boolean {
  return text.length >= 1 && text.length <= MAX_ADDRESS_LENGTH && ADDRESS.test(text) && isHost(text);
}

export const MIN_PORT = 1;
export const MAX_PORT = 65_535;

// Record fields.

export const STATUSES = ['up', 'draining', 'down'] as const;
export type InstanceStatus = (typeof STATUSES)[number];
export const DEFAULT_STATUS: InstanceStatus = 'up';

export function isStatus(text: unknown): text is InstanceStatus {
  return (STATUSES as readonly unknown[]).includes(text);
}

export const MAX_WEIGHT = 10_000;
export const DEFAULT_WEIGHT = 100;

export const MAX_TTL_SECONDS = 86_400;
/** The TTL of an instance registered without one (DEFAULT_TTL_SECONDS changes it). */
export const DEFAULT_TTL_SECONDS = 30;

export const MAX_TAGS = 32;
export const MAX_TAG_LENGTH = 64;
export const MAX_METADATA = 64;
export const MAX_METADATA_KEY_LENGTH = 128;
export const MAX_METADATA_VALUE_LENGTH = 512;

// Requests.

/** etcd's default --max-txn-ops: a batch is one transaction. */
export const MAX_BATCH_OPS = 128;
/** A blocking query holds its answer this long at the most (and by default). */
export const MAX_WAIT_MS = 5 * 60_000;
/** How long a minRevision read waits for the store to reach that revision before its 504. */
export const MIN_REVISION_WAIT_MS = 3000;
/** How long a write waits for the gateway's watch to bring it back before answering anyway (the drain covers it: config.ts). */
export const WRITE_VISIBLE_TIMEOUT_MS = 3000;

/** A duration in milliseconds as the API writes it: "3s", "500ms", "5m". */
export function durationText(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
