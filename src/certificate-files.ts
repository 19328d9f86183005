// Certificate files followed at run time: cert-manager, a mounted Secret or an
// operator replaces them, and their user (the HTTPS server, the etcd client)
// takes the new ones without a restart. The files are read again when their
// directory changes (a Secret volume swaps its `..data` symlink: a watch on the
// file itself would follow the old target), every RELOAD_POLL_MS in case no
// change event comes (network file systems), and on SIGHUP. New files that do
// not load (key and certificate do not match, not PEM, not valid now) are
// refused with a log line and not read again until they change; the current
// ones stay. The first read is the baseline: the files the user started with (if it
// fails, those are unknown, and the next files read are put to use). Each outcome,
// and the end of validity of the certificate in use, goes to GatewayEvents.
import type { FastifyBaseLogger } from 'fastify';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { dirname } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { CertificateName, GatewayEvents } from './events.ts';

/** A change is often several file events (a Secret swap, an editor's write): read once they settle. */
const SETTLE_MS = 200;
/** The fallback when no change event arrives: a renewed certificate is used within a minute. */
const RELOAD_POLL_MS = 30_000;

type Part = 'cert' | 'key' | 'ca';
/** The paths of the files followed (PEM). */
export type CertificateFiles = Partial<Record<Part, string>>;
/** What the files hold. */
export type Certificates = Partial<Record<Part, Buffer>>;

export interface CertificateUser {
  /** Names the certificate on the metrics. */
  certificate: CertificateName;
  /** Names the certificate in log lines: 'TLS certificate', 'etcd client certificate'. */
  name: string;
  /** The settings naming the files, for the log line when they cannot be read. */
  settings: string;
  /** What happens when new files are refused or not taken: 'serving the current one'. */
  keeping: string;
  /** Puts new certificates to use. A rejection keeps the current ones: the next read tries again. */
  use(certificates: Certificates): void | Promise<void>;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Why certificates cannot be used, or undefined when they can. */
function refusal({ cert, key, ca }: Certificates, now: Date): string | undefined {
  try {
    if (cert && key) createSecureContext({ cert, key }); // throws when the key is not the certificate's, or either is not PEM
    for (const pem of [cert, ca]) {
      if (!pem) continue;
      const x509 = new X509Certificate(pem); // of a bundle, the first certificate
      if (new Date(x509.validTo) <= now) return `the certificate ${x509.subject} expired at ${x509.validTo}`;
      if (new Date(x509.validFrom) > now) return `the certificate ${x509.subject} is valid only from ${x509.validFrom}`;
    }
    return undefined;
  } catch (err) {
    return message(err);
  }
}

/** When a certificate (a bundle's first) ends; undefined if it is none (a baseline replaced since the user read it). */
function notAfter(pem: Buffer): Date | undefined {
  try {
    return new Date(new X509Certificate(pem).validTo);
  } catch {
    return undefined;
  }
}

const same = (a: Certificates, b: Certificates) =>
  (['cert', 'key', 'ca'] as const).every((p) => a[p]?.equals(b[p] ?? Buffer.of()) ?? !b[p]);

/** Follows `files` for `user` until close(); resolves after the baseline read. */
export async function followCertificates(
  files: CertificateFiles,
  user: CertificateUser,
  events: Pick<GatewayEvents, 'certificateReload' | 'certificateInUse'>,
  log: FastifyBaseLogger,
): Promise<{ close(): Promise<void> }> {
  const parts = (Object.keys(files) as Part[]).filter((p) => files[p]);
  /** Undefined when the baseline could not be read: the next files read are put to use, whatever they are. */
  let current: Certificates | undefined;

  const readFiles = async (): Promise<Certificates | undefined> => {
    const read: Certificates = {};
    try {
      for (const p of parts) read[p] = await readFile(files[p]!);
      return read;
    } catch (err) {
      log.error({ err }, `${user.name} not reloaded: cannot read ${user.settings}; ${user.keeping}`);
      events.certificateReload(user.certificate, 'refused');
      return undefined;
    }
  };
  // The CA alone is no certificate the user presents: no end date to report.
  const inUse = ({ cert }: Certificates) => {
    const end = cert && notAfter(cert);
    if (end) events.certificateInUse(user.certificate, end);
  };

  const load = async () => {
    const read = await readFiles();
    if (!read || (current && same(read, current))) return;
    const why = refusal(read, new Date());
    if (why) {
      current = read; // refused files are not read again until they change
      log.error({ reason: why }, `${user.name} refused: ${user.keeping}`);
      events.certificateReload(user.certificate, 'refused');
      return;
    }
    try {
      await user.use(read);
    } catch (err) {
      log.error({ reason: message(err) }, `${user.name} not reloaded: ${user.keeping}; tried again on the next change, poll or SIGHUP`);
      events.certificateReload(user.certificate, 'refused');
      return;
    }
    current = read;
    const x509 = new X509Certificate((read.cert ?? read.ca)!);
    log.info({ subject: x509.subject, validTo: x509.validTo, serial: x509.serialNumber }, `${user.name} reloaded`);
    events.certificateReload(user.certificate, 'reloaded');
    inUse(read);
  };
  // One read at a time, in order: a late read never overwrites a newer one.
  let reading = readFiles().then((read) => {
    current = read;
    if (read) inUse(read);
  });
  const reload = () => (reading = reading.then(load));

  let settle: NodeJS.Timeout | undefined;
  const changed = () => {
    clearTimeout(settle);
    settle = setTimeout(reload, SETTLE_MS);
  };
  const watchers: FSWatcher[] = [...new Set(parts.map((p) => dirname(files[p]!)))].map((dir) =>
    watch(dir, { persistent: false }, changed).on('error', (err) => log.warn({ err, dir }, `${user.name} directory not watched`)),
  );
  const poll = setInterval(reload, RELOAD_POLL_MS);
  poll.unref();
  process.on('SIGHUP', reload);
  await reading;

  return {
    async close() {
      process.off('SIGHUP', reload);
      clearInterval(poll);
      clearTimeout(settle);
      for (const w of watchers) w.close();
      await reading;
    },
  };
}
