// Test certificates made with openssl at test time, in a temp dir: a CA, a
// server certificate for 127.0.0.1/localhost and a client certificate signed by
// it, and a second, unrelated CA (a "wrong CA" for failure tests).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const OPENSSL = process.env.OPENSSL_BIN ?? 'openssl';

export interface KeyPair {
  certFile: string;
  keyFile: string;
}

export interface TestCerts {
  dir: string;
  ca: KeyPair;
  server: KeyPair;
  client: KeyPair;
  otherCa: KeyPair;
  remove(): Promise<void>;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function selfSignedCa(dir: string, name: string): Promise<KeyPair> {
  const pair = { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
  await run(OPENSSL, [
    'req',
    '-x509',
    ...EC,
    '-keyout',
    pair.keyFile,
    '-out',
    pair.certFile,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return pair;
}

async function signed(dir: string, ca: KeyPair, name: string, cn: string): Promise<KeyPair> {
  const pair = { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(
    ext,
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n',
  );
  await run(OPENSSL, ['req', ...EC, '-keyout', pair.keyFile, '-out', csr, '-subj', `/CN=${cn}`]);
  await run(OPENSSL, [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.certFile,
    '-CAkey',
    ca.keyFile,
    '-CAcreateserial',
    '-out',
    pair.certFile,
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
  return pair;
}

export async function makeCerts(): Promise<TestCerts> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-certs-'));
  const ca = await selfSignedCa(dir, 'ca');
  const otherCa = await selfSignedCa(dir, 'other-ca');
  const server = await signed(dir, ca, 'server', 'localhost');
  const client = await signed(dir, ca, 'client', 'gateway');
  return { dir, ca, server, client, otherCa, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A certificate for 127.0.0.1/localhost signed by `ca`, valid from a minute ago until `notAfter` (to the second). */
export async function issueUntil(dir: string, ca: KeyPair, name: string, notAfter: Date): Promise<KeyPair> {
  const pair = { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const db = join(dir, `${name}.db`);
  const config = join(dir, `${name}.cnf`);
  // `openssl x509 -days` counts whole days: `openssl ca` takes exact dates, with a small database of its own.
  await writeFile(db, '');
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  await writeFile(
    config,
    `[ca]\ndefault_ca=d\n[d]\ndatabase=${db}\nnew_certs_dir=${dir}\nrand_serial=yes\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n`,
  );
  const stamp = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  await run(OPENSSL, ['req', ...EC, '-keyout', pair.keyFile, '-out', csr, '-subj', `/CN=${name}`]);
  await run(OPENSSL, [
    'ca',
    '-batch',
    '-notext',
    '-config',
    config,
    '-cert',
    ca.certFile,
    '-keyfile',
    ca.keyFile,
    '-in',
    csr,
    '-out',
    pair.certFile,
    '-startdate',
    stamp(new Date(Date.now() - 60_000)),
    '-enddate',
    stamp(notAfter),
    '-extfile',
    ext,
  ]);
  return pair;
}
