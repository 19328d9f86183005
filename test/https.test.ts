// HTTPS serving (TLS_CERT_FILE, TLS_KEY_FILE) with certificates made by openssl per run.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { makeCerts, type TestCerts } from './helpers/certs.ts';
import { startGateway } from './helpers/gateway.ts';
import { httpsGet } from './helpers/security.ts';

let certs: TestCerts;
before(async () => {
  certs = await makeCerts();
});
after(() => certs?.remove());

describe('HTTPS serving', () => {
  it('TLS_CERT_FILE/TLS_KEY_FILE serve the API over https', async () => {
    const gw = await startGateway({ env: { TLS_CERT_FILE: certs.server.certFile, TLS_KEY_FILE: certs.server.keyFile } });
    try {
      assert.match(gw.base, /^https:/);
      const r = await httpsGet(`${gw.base}/health/ready`, readFileSync(certs.ca.certFile));
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.text).status, 'ok');
      await assert.rejects(httpsGet(`${gw.base}/health/ready`, readFileSync(certs.otherCa.certFile)), /certificate/);
      await assert.rejects(fetch(gw.base.replace('https:', 'http:') + '/health/ready', { signal: AbortSignal.timeout(3000) }));
    } finally {
      await gw.close();
    }
  });
});
