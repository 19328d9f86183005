// followCertificates (src/certificate-files.ts) when its first read fails: the files
// the user started with are then unknown, so the next files it can read are put to
// use and reported, not silently taken as the starting point (renewed files would
// never be used until they changed again).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { followCertificates, type Certificates } from '../src/certificate-files.ts';
import type { CertificateReloadResult } from '../src/events.ts';
import { makeCerts, type TestCerts } from './helpers/certs.ts';
import { eventually } from './helpers/gateway.ts';
import { LogCapture } from './helpers/logs.ts';

describe('followCertificates after a failed first read', () => {
  let certs: TestCerts;
  before(async () => (certs = await makeCerts()));
  after(() => certs?.remove());

  it('puts the first files it can read to use, counts the failed read, and reports their end date', async () => {
    const dir = join(certs.dir, 'late');
    await mkdir(dir);
    const files = { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') };
    await copyFile(certs.server.certFile, files.cert); // the key is not there yet: the first read fails
    const used: Certificates[] = [];
    const outcomes: CertificateReloadResult[] = [];
    const ends: Date[] = [];
    const logs = new LogCapture();
    const following = await followCertificates(
      files,
      {
        certificate: 'serving',
        name: 'TLS certificate',
        settings: 'TLS_CERT_FILE/TLS_KEY_FILE',
        keeping: 'serving the current one',
        use: (c) => void used.push(c),
      },
      { certificateReload: (_name, result) => outcomes.push(result), certificateInUse: (_name, notAfter) => ends.push(notAfter) },
      Fastify({ logger: { level: 'info', stream: logs } }).log,
    );
    try {
      assert.deepEqual(outcomes, ['refused']);
      assert.deepEqual(ends, [], 'no certificate known to be in use');
      await copyFile(certs.server.keyFile, join(certs.dir, 'late.key'));
      await rename(join(certs.dir, 'late.key'), files.key);
      await eventually(async () => used.length > 0, 10_000, 'the files put to use');
      assert.deepEqual(used[0], { cert: await readFile(files.cert), key: await readFile(files.key) });
      assert.deepEqual(outcomes, ['refused', 'reloaded']);
      assert.deepEqual(ends, [new Date(new X509Certificate(await readFile(files.cert)).validTo)]);
      assert.equal(logs.count('TLS certificate reloaded'), 1);
    } finally {
      await following.close();
    }
  });
});
