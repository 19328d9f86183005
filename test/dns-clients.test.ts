// The DNS interface for programs: Node's own resolver (c-ares) pointed at the
// gateway with setServers, hostile or broken messages that must not stop or
// hold the server, and access control with DNS_TOKEN.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { promises as dnsPromises } from 'node:dns';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import packet from 'dns-packet';
import { startGateway, type TestGateway } from './helpers/gateway.ts';
import { dig, dnsPort } from './helpers/dns.ts';

describe("Node's resolver", () => {
  let gw: TestGateway;
  let resolver: dnsPromises.Resolver;
  before(async () => {
    gw = await startGateway({ env: { DNS_PORT: '0' } });
    resolver = new dnsPromises.Resolver({ timeout: 10_000, tries: 2 });
    resolver.setServers([`127.0.0.1:${await dnsPort(gw)}`]);
    await gw.request('PUT', '/services/api/instances/a', { address: '10.7.0.1', port: 7001, weight: 5 });
    await gw.request('PUT', '/services/api/instances/b', { address: 'fd00::1:2', port: 7002 });
    await gw.request('PUT', '/services/api/instances/c', { address: '10.7.0.3', port: 7003, status: 'draining' });
    const register = Array.from({ length: 60 }, (_, i) => ({ service: 'many', id: `m${i}`, address: `10.8.0.${i + 1}`, port: 80 }));
    await gw.request('POST', '/batch', { register });
  });
  after(() => gw?.close());

  test('resolve4, resolve6 and resolveSrv give the up instances', async () => {
    assert.deepEqual(await resolver.resolve4('api.service.discovery'), ['10.7.0.1']);
    assert.deepEqual(await resolver.resolve6('api.service.discovery'), ['fd00::1:2']);
    const srv = (await resolver.resolveSrv('_api._tcp.service.discovery')).sort((x, y) => x.port - y.port);
    assert.deepEqual(srv, [
      { name: '0a070001.addr.discovery', port: 7001, priority: 1, weight: 5 },
      { name: 'fd000000000000000000000000010002.addr.discovery', port: 7002, priority: 1, weight: 100 },
    ]);
    assert.deepEqual(await resolver.resolve4(srv[0]!.name), ['10.7.0.1']);
  });

  test('an answer too big for UDP arrives whole: the resolver retries over TCP on TC', async () => {
    assert.equal((await resolver.resolve4('many.service.discovery')).length, 60);
  });

  test('resolveSoa, and the error codes of NXDOMAIN, NODATA and REFUSED', async () => {
    const soa = await resolver.resolveSoa('discovery');
    assert.equal(soa.nsname, 'ns.discovery');
    assert.equal(soa.hostmaster, 'hostmaster.discovery');
    await assert.rejects(resolver.resolve4('missing.service.discovery'), { code: 'ENOTFOUND' });
    await assert.rejects(resolver.resolveTxt('api.service.discovery'), { code: 'ENODATA' });
    await assert.rejects(resolver.resolve4('example.com'), { code: 'EREFUSED' });
  });
});

describe('broken and hostile messages', () => {
  let gw: TestGateway;
  let port: number;
  before(async () => {
    gw = await startGateway({ env: { DNS_PORT: '0' } });
    port = await dnsPort(gw);
    await gw.request('PUT', '/services/web/instances/a', { address: '10.6.0.1', port: 80 });
  });
  after(() => gw?.close());

  /** Sends one datagram; resolves the answer, or undefined when none comes within a while. */
  async function udp(msg: Buffer, waitMs = 1500): Promise<packet.DecodedPacket | undefined> {
    const socket = dgram.createSocket('udp4');
    try {
      socket.send(msg, port, '127.0.0.1');
      const [answer] = (await Promise.race([once(socket, 'message'), new Promise((r) => setTimeout(() => r([undefined]), waitMs))])) as [
        Buffer?,
      ];
      return answer && packet.decode(answer);
    } finally {
      socket.close();
    }
  }

  const query = (over: Partial<packet.Packet> = {}) =>
    packet.encode({
      type: 'query',
      id: 4242,
      flags: packet.RECURSION_DESIRED,
      questions: [{ type: 'A', name: 'web.service.discovery' }],
      ...over,
    });
  const rcodeOf = (p: packet.DecodedPacket | undefined) => (p as { rcode?: string } | undefined)?.rcode;

  test('garbage, two questions, an unknown opcode, class CHAOS, EDNS version 1: a clean error code each', async () => {
    const garbage = Buffer.concat([query().subarray(0, 12), Buffer.from([0xc0, 0xff, 0x3f, 1, 2])]);
    assert.equal(rcodeOf(await udp(garbage)), 'FORMERR');
    const two = query({
      questions: [
        { type: 'A', name: 'web.service.discovery' },
        { type: 'A', name: 'x.service.discovery' },
      ],
    });
    assert.equal(rcodeOf(await udp(two)), 'FORMERR');
    const status = query();
    status.writeUInt16BE(status.readUInt16BE(2) | (2 << 11), 2); // opcode STATUS
    assert.equal(rcodeOf(await udp(status)), 'NOTIMP');
    assert.equal(rcodeOf(await udp(query({ questions: [{ type: 'TXT', name: 'version.bind', class: 'CH' }] }))), 'REFUSED');
    const v1 = await udp(
      query({
        additionals: [
          { type: 'OPT', name: '.', udpPayloadSize: 1232, ednsVersion: 1, extendedRcode: 0, flags: 0, flag_do: false, options: [] },
        ],
      }),
    );
    const opt = v1?.additionals?.find((a) => a.type === 'OPT') as packet.OptAnswer | undefined;
    assert.equal(opt?.extendedRcode, 1, 'BADVERS is extended rcode 16');
  });

  test('the question comes back as it was asked, letter case included; a question compressed with a pointer is FORMERR', async () => {
    // Resolvers that randomize the case of the names they ask (DNS 0x20) drop an answer whose question differs.
    const asked = query({ questions: [{ type: 'A', name: 'WeB.SeRvIcE.DiScOvErY' }] });
    const answer = await udp(asked);
    assert.equal(answer?.questions?.[0]?.name, 'WeB.SeRvIcE.DiScOvErY');
    assert.deepEqual(
      answer?.answers?.map((a) => (a as packet.StringAnswer).data),
      ['10.6.0.1'],
    );
    // dns-packet reads a pointer back into the header (an id of 0 reads as the root name), but
    // nothing precedes a first question to point to.
    const header = query({ id: 0 }).subarray(0, 12);
    const pointer = Buffer.concat([header, Buffer.from([0xc0, 0, 0, 1, 0, 1])]);
    assert.equal(packet.decode(pointer).questions?.[0]?.name, '.');
    assert.equal(rcodeOf(await udp(pointer)), 'FORMERR');
  });

  test('a message shorter than a header, or an answer sent as a query, is dropped', async () => {
    assert.equal(await udp(Buffer.from([1, 2, 3])), undefined);
    assert.equal(
      await udp(packet.encode({ type: 'response', id: 7, questions: [{ type: 'A', name: 'web.service.discovery' }] })),
      undefined,
    );
  });

  test('an oversized TCP frame closes that connection; a half-sent frame holds nothing; the server keeps answering', async () => {
    const oversized = net.connect(port, '127.0.0.1');
    await once(oversized, 'connect');
    oversized.write(Buffer.from([0xff, 0xff, 0, 0, 0]));
    await once(oversized, 'close');

    const idle = net.connect(port, '127.0.0.1');
    await once(idle, 'connect');
    idle.write(Buffer.from([0, 40, 1, 2])); // promises 40 bytes, sends 2
    const answer = await udp(query());
    assert.equal(rcodeOf(answer), 'NOERROR');
    assert.deepEqual(
      answer?.answers?.map((a) => (a as packet.StringAnswer).data),
      ['10.6.0.1'],
    );
    assert.equal((await dig(port, 'web.service.discovery', 'A', '+tcp')).answer.length, 1);
    idle.destroy();
  });

  test('a burst of random bytes leaves the server answering', async () => {
    const socket = dgram.createSocket('udp4');
    for (let i = 0; i < 300; i++) {
      const junk = Buffer.from(Array.from({ length: 12 + (i % 80) }, () => Math.floor(Math.random() * 256)));
      junk[2]! &= 0x7f; // a query, so that it is read rather than dropped
      socket.send(junk, port, '127.0.0.1');
    }
    socket.close();
    assert.equal(rcodeOf(await udp(query())), 'NOERROR');
  });
});

describe('access control', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dns-tokens-'));
  const tokensFile = join(dir, 'tokens.json');
  writeFileSync(
    tokensFile,
    JSON.stringify({
      tokens: [
        { name: 'admin', token: 'admin-secret', admin: true },
        { name: 'dns', token: 'dns-secret', read: ['pay*'] },
      ],
    }),
  );

  test('DNS answers only the services DNS_TOKEN may read; the others are NXDOMAIN', async (t) => {
    const gw = await startGateway({ env: { DNS_PORT: '0', AUTH_TOKENS_FILE: tokensFile, DNS_TOKEN: 'dns-secret' } });
    t.after(() => gw.close());
    const admin = { authorization: 'Bearer admin-secret' };
    await gw.request('PUT', '/services/payments/instances/p', { address: '10.4.0.1', port: 80 }, admin);
    await gw.request('PUT', '/services/secret/instances/s', { address: '10.4.0.2', port: 80 }, admin);
    const port = await dnsPort(gw, admin);
    assert.deepEqual(
      (await dig(port, 'payments.service.discovery', 'A')).answer.map((r) => r.data),
      ['10.4.0.1'],
    );
    assert.equal((await dig(port, 'secret.service.discovery', 'A')).status, 'NXDOMAIN');
  });

  test('with tokens configured and no DNS_TOKEN, DNS stays off and /health (to a token holder) and the log say why', async (t) => {
    const lines: string[] = [];
    const gw = await startGateway({
      env: { DNS_PORT: '0', AUTH_TOKENS_FILE: tokensFile, LOG_LEVEL: 'warn' },
      deps: { logStream: { write: (line: string) => void lines.push(line) } },
    });
    t.after(() => gw.close());
    assert.deepEqual((await gw.request('GET', '/health')).json.dns, { enabled: false }, 'the reason only to a token holder');
    const dns = (await gw.request('GET', '/health', undefined, { authorization: 'Bearer admin-secret' })).json.dns;
    assert.equal(dns.enabled, false);
    assert.match(dns.reason, /DNS_TOKEN/);
    assert.ok(
      lines.some((l) => /DNS stays off/.test(l) && /DNS_TOKEN/.test(l)),
      lines.join(''),
    );
  });

  test('a DNS_TOKEN that is no token of the file stops the start naming the setting', async () => {
    await assert.rejects(startGateway({ env: { DNS_PORT: '0', AUTH_TOKENS_FILE: tokensFile, DNS_TOKEN: 'wrong' } }), /DNS_TOKEN/);
  });
});
