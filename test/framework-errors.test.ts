// Errors raised before a route runs are problem+json like every other: a name or id too
// long for a router, a URL whose escapes do not decode, a request Node's parser refuses.
// With access control on, a missing token is still the first answer for a long name.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway, type Answer, type TestGateway } from './helpers/gateway.ts';

const body = { address: '10.0.0.1', port: 80 };
const LONG = 'a'.repeat(600);

function assertProblem(answer: Answer, status: number, code: string): void {
  assert.equal(answer.status, status, answer.text);
  assert.match(answer.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(answer.json.code, code);
  assert.equal(answer.json.status, status);
}

/** What the gateway writes back to bytes sent on a bare socket, until it closes the connection. */
async function rawAnswer(gw: TestGateway, bytes: string): Promise<{ status: number; contentType: string; problem: { code: string } }> {
  const socket = connect(Number(new URL(gw.base).port), '127.0.0.1');
  let text = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  socket.write(bytes);
  await new Promise((resolve) => socket.once('close', resolve));
  const [head = '', payload = ''] = text.split('\r\n\r\n');
  return {
    status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]),
    contentType: /^content-type: (.*)$/im.exec(head)?.[1] ?? '',
    problem: JSON.parse(payload),
  };
}

describe('errors before a route runs, open gateway', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(() => gw.close());

  it('a service name of 600 characters is a 400 invalid-request naming the field, not a 414', async () => {
    const answer = await gw.request('PUT', `/services/${LONG}/instances/i-1`, body);
    assertProblem(answer, 400, 'invalid-request');
    assert.match(answer.json.detail, /params\.name/);
  });

  it('an instance id of 600 characters is a 400 invalid-request naming the field', async () => {
    const answer = await gw.request('GET', `/services/svc/instances/${LONG}`);
    assertProblem(answer, 400, 'invalid-request');
    assert.match(answer.json.detail, /params\.id/);
  });

  it('a percent-escape that does not decode is a 400 invalid-request', async () => {
    assertProblem(await gw.request('GET', '/services/ab%ZZ'), 400, 'invalid-request');
    assertProblem(await gw.request('PUT', '/services/%E0%A4%A/instances/i-1', body), 400, 'invalid-request');
  });

  it('a header line Node cannot parse is a 400 invalid-request', async () => {
    const answer = await rawAnswer(gw, 'GET /services HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n');
    assert.equal(answer.status, 400);
    assert.equal(answer.contentType, 'application/problem+json');
    assert.equal(answer.problem.code, 'invalid-request');
  });

  it('headers over 16 KiB are a 431 headers-too-large', async () => {
    const answer = await rawAnswer(gw, `GET /services HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.equal(answer.status, 431);
    assert.equal(answer.contentType, 'application/problem+json');
    assert.equal(answer.problem.code, 'headers-too-large');
  });
});

describe('errors before a route runs, with access control', () => {
  let gw: TestGateway;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'framework-errors-'));
    const tokensFile = join(dir, 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [{ name: 'ci', token: 's3cret', admin: true }] }));
    gw = await startGateway({ env: { AUTH_TOKENS_FILE: tokensFile } });
  });
  after(async () => {
    await gw.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a name too long for any router is 401 without a token, 400 with one', async () => {
    assertProblem(await gw.request('PUT', `/services/${LONG}/instances/i-1`, body), 401, 'unauthorized');
    const answer = await gw.request('PUT', `/services/${LONG}/instances/i-1`, body, { authorization: 'Bearer s3cret' });
    assertProblem(answer, 400, 'invalid-request');
  });

  it('a URL that does not decode is 400 whatever the token: it names nothing to authorize', async () => {
    assertProblem(await gw.request('GET', '/services/ab%ZZ'), 400, 'invalid-request');
  });
});
