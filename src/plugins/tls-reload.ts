// A renewed TLS certificate and key (TLS_CERT_FILE, TLS_KEY_FILE) served without a
// restart: cert-manager or a mounted Secret replaces the files, and the next
// handshake presents the new pair. Connections and change streams already open keep
// the session they have. The files are read again when their directory changes (a
// Secret volume swaps its `..data` symlink: a watch on the file itself would follow
// the old target), every RELOAD_POLL_MS in case no change event comes (network file
// systems), and on SIGHUP. A new pair that does not load (key and certificate do not
// match, not PEM, not valid now) is refused with a log line: the current one stays.
import type { FastifyInstance } from 'fastify';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { dirname } from 'node:path';
import { createSecureContext, type Server as TlsServer } from 'node:tls';

/** A change is often several file events (a Secret swap, an editor's write): read once they settle. */
const SETTLE_MS = 200;
/** The fallback when no change event arrives: a renewed certificate is served within a minute. */
const RELOAD_POLL_MS = 30_000;

interface Pair {
  cert: Buffer;
  key: Buffer;
}

/** Why a pair cannot be served, or undefined when it can. */
function refusal(pair: Pair, now: Date): string | undefined {
  try {
    createSecureContext(pair); // throws when the key is not the certificate's, or either is not PEM
    const x509 = new X509Certificate(pair.cert);
    if (new Date(x509.validTo) <= now) return `the certificate expired at ${x509.validTo}`;
    if (new Date(x509.validFrom) > now) return `the certificate is valid only from ${x509.validFrom}`;
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

export default async function tlsReload(app: FastifyInstance, opts: { certFile: string; keyFile: string }): Promise<void> {
  const server = app.server as unknown as TlsServer;
  let current: Pair | undefined;
  let reading: Promise<void> = Promise.resolve();

  const load = async () => {
    let pair: Pair;
    try {
      pair = { cert: await readFile(opts.certFile), key: await readFile(opts.keyFile) };
    } catch (err) {
      app.log.error({ err }, 'TLS certificate not reloaded: cannot read TLS_CERT_FILE/TLS_KEY_FILE; serving the current one');
      return;
    }
    if (current && pair.cert.equals(current.cert) && pair.key.equals(current.key)) return;
    const first = current === undefined;
    current = pair; // a refused pair is not read again until the files change
    if (first) return; // the pair the server started with (app.ts loaded it)
    const why = refusal(pair, new Date());
    if (why) {
      app.log.error({ reason: why }, 'TLS certificate refused: serving the current one');
      return;
    }
    server.setSecureContext(pair);
    const x509 = new X509Certificate(pair.cert);
    app.log.info({ subject: x509.subject, validTo: x509.validTo, serial: x509.serialNumber }, 'TLS certificate reloaded');
  };
  // One read at a time, in order: a late read never overwrites a newer one.
  const reload = () => (reading = reading.then(load));

  let settle: NodeJS.Timeout | undefined;
  const changed = () => {
    clearTimeout(settle);
    settle = setTimeout(reload, SETTLE_MS);
  };
  const watchers: FSWatcher[] = [...new Set([dirname(opts.certFile), dirname(opts.keyFile)])].map((dir) =>
    watch(dir, { persistent: false }, changed).on('error', (err) => app.log.warn({ err, dir }, 'TLS directory not watched')),
  );
  const poll = setInterval(reload, RELOAD_POLL_MS);
  poll.unref();
  process.on('SIGHUP', reload);
  await reload();

  app.addHook('onClose', async () => {
    process.off('SIGHUP', reload);
    clearInterval(poll);
    clearTimeout(settle);
    for (const w of watchers) w.close();
    await reading;
  });
}
