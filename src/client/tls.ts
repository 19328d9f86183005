// Trusting a private CA. Node's fetch is undici, which takes a `dispatcher` per request, but Node
// bundles undici without exporting it; the client must not depend on it either. So the Agent
// class is taken from the global dispatcher that Node's fetch installs on first use (a data:
// fetch makes sure it exists). Browsers trust what the operating system trusts: no `ca` there.

const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');

type DispatcherClass = new (options: { connect: { ca: string | readonly string[] } }) => object;

/** A fetch dispatcher that trusts `ca` (PEM text, one or several certificates) instead of the default CAs. */
export async function dispatcherTrusting(ca: string | readonly string[]): Promise<object> {
  const global = globalThis as Record<symbol, unknown>;
  if (global[GLOBAL_DISPATCHER] === undefined) await (await fetch('data:,')).text();
  const Agent = (global[GLOBAL_DISPATCHER] as { constructor?: unknown } | undefined)?.constructor;
  if (typeof Agent !== 'function') throw new TypeError('the ca option needs Node.js 20.19 or later (its fetch takes a dispatcher)');
  return new (Agent as DispatcherClass)({ connect: { ca } });
}
