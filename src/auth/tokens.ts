// Access tokens: the AUTH_TOKENS_FILE format, its validation, and matching a
// presented bearer token in constant time. Pure: no fastify, no HTTP.
//
// File format (docs/security.md):
//   {"tokens": [{"name": "ci", "token": "s3cret", "read": ["payments*"], "write": ["payments"], "admin": false},
//               {"name": "ops", "sha256": "<64 hex digits>", "admin": true}]}
// A pattern is a service name, or a prefix followed by `*` (`payments*`, or `*`
// for every service), the way etcd grants permissions on a key prefix. Read and
// write are separate rights, as in etcd; admin may read and write every service.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.ts';
import { SERVICE_SCOPE_PATTERN } from '../rules.ts';

export interface AccessToken {
  readonly name: string;
  readonly admin: boolean;
  canRead(service: string): boolean;
  canWrite(service: string): boolean;
}

/** A bad AUTH_TOKENS_FILE is a bad setting: the start stops with a message naming it. */
class TokenFileError extends ConfigError {}

const PATTERN = new RegExp(SERVICE_SCOPE_PATTERN);
const HEX_DIGEST = /^[0-9a-f]{64}$/;
const FIELDS = new Set(['name', 'token', 'sha256', 'read', 'write', 'admin', 'description']);

/** Compiles patterns into one predicate: exact names in a set, prefixes in a list. */
function matcher(patterns: string[]): (service: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const p of patterns) {
    if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
    else exact.add(p);
  }
  if (prefixes.includes('')) return () => true;
  return (service) => exact.has(service) || prefixes.some((p) => service.startsWith(p));
}

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

interface StoredToken {
  digest: Buffer;
  token: AccessToken;
}

export class TokenSet {
  private constructor(private readonly entries: StoredToken[]) {}

  /**
   * The token whose secret this is, or undefined. Every stored digest is compared
   * (no early exit), each with timingSafeEqual, so the time taken says nothing
   * about how close a guess came or which entry matched.
   */
  lookup(presented: string): AccessToken | undefined {
    const d = digest(presented);
    let found: AccessToken | undefined;
    for (const e of this.entries) if (timingSafeEqual(d, e.digest) && !found) found = e.token;
    return found;
  }

  /** Parses and validates a tokens file's text; `where` names it in errors. */
  static parse(text: string, where = 'AUTH_TOKENS_FILE'): TokenSet {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new TokenFileError(`${where}: not valid JSON (${err instanceof Error ? err.message : String(err)})`);
    }
    const list = (doc as { tokens?: unknown } | null)?.tokens;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || !Array.isArray(list)) {
      throw new TokenFileError(`${where}: expected an object {"tokens": [...]}`);
    }
    if (list.length === 0) throw new TokenFileError(`${where}: "tokens" is empty; to run without access control, unset AUTH_TOKENS_FILE`);
    const problems: string[] = [];
    const entries: StoredToken[] = [];
    const names = new Set<string>();
    const digests = new Set<string>();
    list.forEach((raw: unknown, i) => {
      const at = `tokens[${i}]`;
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return problems.push(`${at}: expected an object`);
      const t = raw as Record<string, unknown>;
      for (const k of Object.keys(t)) if (!FIELDS.has(k)) problems.push(`${at}.${k}: unknown field (known: ${[...FIELDS].join(', ')})`);
      const name = t.name;
      if (typeof name !== 'string' || name.length === 0 || name.length > 128) problems.push(`${at}.name: a non-empty string is required`);
      else if (names.has(name)) problems.push(`${at}.name: ${JSON.stringify(name)} is used twice`);
      else names.add(name);
      const label = typeof name === 'string' ? `${at} (${name})` : at;

      let d: Buffer | undefined;
      if ((t.token === undefined) === (t.sha256 === undefined)) problems.push(`${label}: give exactly one of "token" or "sha256"`);
      else if (t.token !== undefined) {
        if (typeof t.token !== 'string' || t.token.length === 0 || /\s/.test(t.token))
          problems.push(`${label}.token: a non-empty string without spaces is required`);
        else d = digest(t.token);
      } else if (typeof t.sha256 !== 'string' || !HEX_DIGEST.test(t.sha256.toLowerCase())) {
        problems.push(`${label}.sha256: 64 hexadecimal digits (the SHA-256 of the token) are required`);
      } else d = Buffer.from(t.sha256.toLowerCase(), 'hex');
      if (d) {
        const hex = d.toString('hex');
        if (digests.has(hex)) problems.push(`${label}: the same token is given twice`);
        digests.add(hex);
      }

      const patterns = (field: 'read' | 'write'): string[] => {
        const v = t[field];
        if (v === undefined) return [];
        if (!Array.isArray(v)) {
          problems.push(`${label}.${field}: an array of service-name patterns is required`);
          return [];
        }
        for (const p of v) {
          if (typeof p !== 'string' || !PATTERN.test(p)) {
            problems.push(
              `${label}.${field}: ${JSON.stringify(p)} is not a service name or a prefix ending in * (e.g. "payments", "payments*", "*")`,
            );
          }
        }
        return v.filter((p): p is string => typeof p === 'string');
      };
      const read = patterns('read');
      const write = patterns('write');
      if (t.admin !== undefined && typeof t.admin !== 'boolean') problems.push(`${label}.admin: true or false`);
      const admin = t.admin === true;
      if (d && typeof name === 'string') {
        const canRead = admin ? () => true : matcher(read);
        const canWrite = admin ? () => true : matcher(write);
        entries.push({ digest: d, token: Object.freeze({ name, admin, canRead, canWrite }) });
      }
    });
    if (problems.length) throw new TokenFileError(`${where}: ${problems.slice(0, 10).join('; ')}`);
    return new TokenSet(entries);
  }

  static load(file: string): TokenSet {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new TokenFileError(`AUTH_TOKENS_FILE: cannot read ${JSON.stringify(file)}${code ? ` (${code})` : ''}`);
    }
    return TokenSet.parse(text, `AUTH_TOKENS_FILE (${file})`);
  }
}

/** The SHA-256 of a token as the file's "sha256" field spells it. */
export function tokenDigest(token: string): string {
  return digest(token).toString('hex');
}
