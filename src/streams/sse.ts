// Server-Sent Events on the wire: how each frame of a change stream is spelled.
// Every frame is built once and shared (a change by every subscriber that sees
// it, a service's part of a snapshot by every snapshot that shows that list).
import type { CachedInstance } from '../registry/cache.ts';
import type { Change } from '../registry/types.ts';

/** One change: `id:` its revision, `event:` its type. */
export function changeFrame(c: Change): string {
  const data: Record<string, unknown> = { type: c.type, service: c.service, id: c.id, revision: c.revision };
  if (c.instance) data.instance = c.instance;
  if (c.reason) data.reason = c.reason;
  return `id: ${c.revision}\nevent: ${c.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * A snapshot is `snapshotHead`, then each service's part (`servicePart`) with
 * SNAPSHOT_SEPARATOR between them, then SNAPSHOT_TAIL. Services whose list has not
 * changed give the same part in every snapshot, so it is built once.
 */
export const snapshotHead = (revision: number, reset: boolean): string =>
  `id: ${revision}\nevent: snapshot\ndata: {"revision":${revision}${reset ? ',"reset":true' : ''},"services":{`;
export const SNAPSHOT_SEPARATOR = ',';
export const SNAPSHOT_TAIL = '}}\n\n';

/** One service of a snapshot in pieces, from the instances' cached JSON (in the order shown). */
export function* servicePart(name: string, list: readonly CachedInstance[]): Iterable<string> {
  yield `${JSON.stringify(name)}:[`;
  for (let i = 0; i < list.length; i++) yield i ? `,${list[i]!.json}` : list[i]!.json;
  yield ']';
}

/** A quiet stream's id moves on to `revision`. */
export const progressFrame = (revision: number): string => `id: ${revision}\nevent: progress\ndata: {"revision":${revision}}\n\n`;

/** How long a client waits before reconnecting. */
export const retryFrame = (ms: number): string => `retry: ${ms}\n\n`;

/** A comment that keeps proxies from closing a quiet stream. */
export const KEEP_ALIVE = ': keep-alive\n\n';
