// Server-Sent Events on the wire: how each frame of a change stream is spelled.
// Every frame is built once and shared (a change by every subscriber that sees
// it, a snapshot by every subscriber of its scope and revision).
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
 * A snapshot in pieces, to be joined in order, from the instances' cached JSON
 * (in the order shown): no object tree of the whole registry is built.
 */
export function* snapshotFrame(
  revision: number,
  services: ReadonlyMap<string, readonly CachedInstance[]>,
  reset: boolean,
): Iterable<string> {
  yield `id: ${revision}\nevent: snapshot\ndata: {"revision":${revision}${reset ? ',"reset":true' : ''},"services":{`;
  let first = true;
  for (const [name, list] of services) {
    yield `${first ? '' : ','}${JSON.stringify(name)}:[`;
    first = false;
    for (let i = 0; i < list.length; i++) yield i ? `,${list[i]!.json}` : list[i]!.json;
    yield ']';
  }
  yield '}}\n\n';
}

/** A quiet stream's id moves on to `revision`. */
export const progressFrame = (revision: number): string => `id: ${revision}\nevent: progress\ndata: {"revision":${revision}}\n\n`;

/** How long a client waits before reconnecting. */
export const retryFrame = (ms: number): string => `retry: ${ms}\n\n`;

/** A comment that keeps proxies from closing a quiet stream. */
export const KEEP_ALIVE = ': keep-alive\n\n';
