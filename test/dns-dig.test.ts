// The DNS interface as dig sees it, over UDP and TCP: every record type of API.md
// "DNS interface", status and tag filtering, negative answers with the SOA,
// truncation, and answers that follow registrations at once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEtcd, type EtcdCluster } from './helpers/etcd.ts';
import { metricValue, startGateway, type TestGateway } from './helpers/gateway.ts';
import { dig, dnsPort } from './helpers/dns.ts';

const TTL = 7;

let etcd: EtcdCluster;
let gw: TestGateway;
let port: number;
before(async () => {
  etcd = await startEtcd();
  gw = await startGateway({ etcd, env: { DNS_PORT: '0', DNS_TTL_SECONDS: String(TTL) } });
  port = await dnsPort(gw);
  const reg = async (service: string, id: string, body: Record<string, unknown>) => {
    const r = await gw.request('PUT', `/services/${service}/instances/${id}`, { port: 80, ...body });
    assert.ok(r.status < 300, r.text);
  };
  await reg('web', 'v4a', { address: '10.1.0.1', port: 8001, weight: 100, tags: ['blue'] });
  await reg('web', 'v4b', { address: '10.1.0.2', port: 8002, weight: 300, tags: ['Green'] });
  await reg('web', 'v6', { address: 'fd00::7', port: 8003, weight: 0, tags: ['blue'] });
  await reg('web', 'named', { address: 'app.example.com', port: 8004 });
  await reg('web', 'drain', { address: '10.1.0.9', port: 8009, status: 'draining', tags: ['blue'] });
  await reg('web', 'down', { address: '10.1.0.10', port: 8010, status: 'down' });
  await reg('idle', 'd1', { address: '10.2.0.1', status: 'draining' });
  await reg('a.b', 'x', { address: '10.3.0.1' });
});
after(async () => {
  await gw?.close();
  await etcd?.close();
});

const data = (records: { data: string }[]) => records.map((r) => r.data).sort();

describe('records', () => {
  test('A: the IPv4 addresses of the up instances, with the configured TTL, from an authoritative server that does not recurse', async () => {
    const a = await dig(port, 'web.service.discovery', 'A');
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(data(a.answer), ['10.1.0.1', '10.1.0.2']);
    assert.ok(a.answer.every((r) => r.ttl === TTL && r.type === 'A'));
    assert.ok(a.flags.includes('aa') && !a.flags.includes('ra'), a.raw);
  });

  test('AAAA: the IPv6 addresses of the up instances', async () => {
    const a = await dig(port, 'web.service.discovery', 'AAAA');
    assert.deepEqual(data(a.answer), ['fd00::7']);
  });

  test('SRV, in both name forms: one record per up instance with priority 1, its weight and port; address targets resolve in the additional section', async () => {
    for (const name of ['web.service.discovery', '_web._tcp.service.discovery']) {
      const a = await dig(port, name, 'SRV');
      assert.equal(a.status, 'NOERROR');
      assert.deepEqual(data(a.answer), [
        '1 0 8003 fd000000000000000000000000000007.addr.discovery.',
        '1 100 8001 0a010001.addr.discovery.',
        '1 100 8004 app.example.com.',
        '1 300 8002 0a010002.addr.discovery.',
      ]);
      assert.deepEqual(
        a.additional
          .filter((r) => r.type !== 'OPT')
          .map((r) => `${r.name} ${r.type} ${r.data}`)
          .sort(),
        [
          '0a010001.addr.discovery. A 10.1.0.1',
          '0a010002.addr.discovery. A 10.1.0.2',
          'fd000000000000000000000000000007.addr.discovery. AAAA fd00::7',
        ],
      );
    }
  });

  test('the SRV targets resolve by themselves (A and AAAA of the addr names)', async () => {
    assert.deepEqual(data((await dig(port, '0a010001.addr.discovery', 'A')).answer), ['10.1.0.1']);
    assert.deepEqual(data((await dig(port, 'fd000000000000000000000000000007.addr.discovery', 'AAAA')).answer), ['fd00::7']);
  });

  test('tag filters in both forms: only the up instances carrying the tag (any case)', async () => {
    assert.deepEqual(data((await dig(port, 'blue.web.service.discovery', 'A')).answer), ['10.1.0.1']);
    assert.deepEqual(data((await dig(port, 'blue.web.service.discovery', 'AAAA')).answer), ['fd00::7']);
    assert.deepEqual(data((await dig(port, '_web._blue.service.discovery', 'SRV')).answer), [
      '1 0 8003 fd000000000000000000000000000007.addr.discovery.',
      '1 100 8001 0a010001.addr.discovery.',
    ]);
    assert.deepEqual(data((await dig(port, 'green.web.service.discovery', 'SRV')).answer), ['1 300 8002 0a010002.addr.discovery.']);
  });

  test('the SOA of the zone', async () => {
    const a = await dig(port, 'discovery', 'SOA');
    assert.equal(a.status, 'NOERROR');
    assert.equal(a.answer.length, 1);
    assert.match(a.answer[0]!.data, new RegExp(`^ns\\.discovery\\. hostmaster\\.discovery\\. \\d+ 3600 600 86400 ${TTL}$`));
  });

  test('the same question over TCP gets the same records', async () => {
    const a = await dig(port, '_web._tcp.service.discovery', 'SRV', '+tcp');
    assert.equal(a.status, 'NOERROR');
    assert.equal(a.answer.length, 4);
  });

  test('records come in a new order from answer to answer', async () => {
    const orders = new Set<string>();
    for (let i = 0; i < 12 && orders.size < 2; i++)
      orders.add((await dig(port, 'web.service.discovery', 'SRV')).answer.map((r) => r.data).join('|'));
    assert.ok(orders.size >= 2, 'twelve answers came in one order');
  });
});

describe('negative answers', () => {
  const soa = (records: { type: string; name: string }[]) => records.filter((r) => r.type === 'SOA').map((r) => r.name);

  test('a service with no up instance: NOERROR, no answers, the SOA in the authority section', async () => {
    const a = await dig(port, 'idle.service.discovery', 'A');
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(a.answer, []);
    assert.deepEqual(soa(a.authority), ['discovery.']);
  });

  test('an unknown service, or a tag no instance carries: NXDOMAIN with the SOA', async () => {
    for (const name of ['nope.service.discovery', 'purple.web.service.discovery', '_web._purple.service.discovery']) {
      const a = await dig(port, name, 'SRV');
      assert.equal(a.status, 'NXDOMAIN', name);
      assert.deepEqual(soa(a.authority), ['discovery.']);
    }
  });

  test('a type the zone does not hold at an existing name: NOERROR with the SOA (TXT, MX, an unassigned type)', async () => {
    for (const type of ['TXT', 'MX', 'TYPE65280']) {
      const a = await dig(port, 'web.service.discovery', type);
      assert.equal(a.status, 'NOERROR', type);
      assert.deepEqual(a.answer, []);
      assert.deepEqual(soa(a.authority), ['discovery.']);
    }
  });

  test("the SOA's serial is the store revision the gateway has applied, and follows each change", async () => {
    const serial = async () => Number((await dig(port, 'nope.service.discovery', 'A')).authority[0]!.data.split(' ')[2]);
    const first = await serial();
    assert.equal(first, (await gw.request('GET', '/services')).json.revision);
    const put = await gw.request('PUT', '/services/serial/instances/s1', { address: '10.9.0.1', port: 80, ttl: 0 });
    for (const deadline = Date.now() + 10_000; (await serial()) !== put.json.revision;) {
      assert.ok(Date.now() < deadline, `the serial stayed below revision ${put.json.revision}`);
    }
    await gw.request('DELETE', '/services/serial/instances/s1');
  });

  test('a name outside the domain: REFUSED (the gateway never recurses), not authoritative', async () => {
    const a = await dig(port, 'example.com', 'A');
    assert.equal(a.status, 'REFUSED');
    assert.deepEqual(a.answer, []);
    assert.ok(!a.flags.includes('aa'), a.raw);
  });

  test('a service whose name holds a dot is not reachable', async () => {
    assert.equal((await gw.request('GET', '/services/a.b')).json.instances.length, 1);
    assert.equal((await dig(port, 'a.b.service.discovery', 'A')).status, 'NXDOMAIN');
  });
});

describe('truncation', () => {
  const COUNT = 40;
  before(async () => {
    const register = Array.from({ length: COUNT }, (_, i) => ({ service: 'big', id: `i${i}`, address: `10.9.0.${i + 1}`, port: 9000 + i }));
    assert.equal((await gw.request('POST', '/batch', { register })).status, 200);
  });

  test('a UDP answer past 512 bytes is cut at a whole record with TC set; EDNS0 allows more; TCP gets every record', async () => {
    const classic = await dig(port, 'big.service.discovery', 'SRV', '+noedns', '+ignore');
    assert.ok(classic.flags.includes('tc'), classic.raw);
    assert.ok(classic.answer.length > 0 && classic.answer.length < COUNT, `${classic.answer.length} records`);
    assert.ok(
      classic.answer.every((r) => /^1 100 9\d{3} 0a09\w{4}\.addr\.discovery\.$/.test(r.data)),
      classic.raw,
    );
    // Each SRV record kept its address record.
    assert.equal(classic.additional.length, classic.answer.length);

    const edns = await dig(port, 'big.service.discovery', 'SRV', '+bufsize=1232', '+ignore');
    assert.ok(edns.flags.includes('tc'), edns.raw);
    assert.ok(edns.answer.length > classic.answer.length && edns.answer.length < COUNT, `${edns.answer.length} records`);

    const tcp = await dig(port, 'big.service.discovery', 'SRV', '+tcp');
    assert.ok(!tcp.flags.includes('tc'));
    assert.equal(tcp.answer.length, COUNT);
    assert.equal(tcp.additional.filter((r) => r.type === 'A').length, COUNT);

    // dig without +ignore retries over TCP on TC, as resolvers do.
    assert.equal((await dig(port, 'big.service.discovery', 'A')).answer.length, COUNT);
  });
});

describe('following changes', () => {
  test('a registration, a status change and a deregistration show in the next answer', async () => {
    const ask = async () => data((await dig(port, 'live.service.discovery', 'A')).answer);
    assert.equal((await dig(port, 'live.service.discovery', 'A')).status, 'NXDOMAIN');
    await gw.request('PUT', '/services/live/instances/l1', { address: '10.5.0.1', port: 80 });
    await gw.request('PUT', '/services/live/instances/l2', { address: '10.5.0.2', port: 80 });
    assert.deepEqual(await ask(), ['10.5.0.1', '10.5.0.2']);
    await gw.request('PUT', '/services/live/instances/l2/heartbeat', { status: 'draining' });
    assert.deepEqual(await ask(), ['10.5.0.1']);
    await gw.request('DELETE', '/services/live/instances/l2');
    await gw.request('DELETE', '/services/live/instances/l1');
    assert.equal((await dig(port, 'live.service.discovery', 'A')).status, 'NXDOMAIN');
  });
});

describe('operations', () => {
  test('/metrics counts queries by type and response code; /health says DNS is on and where', async () => {
    const before = await metricValue(gw, 'discovery_dns_queries_total', '{qtype="A",rcode="REFUSED"}');
    await dig(port, 'example.org', 'A');
    assert.equal(await metricValue(gw, 'discovery_dns_queries_total', '{qtype="A",rcode="REFUSED"}'), before + 1);
    const health = (await gw.request('GET', '/health')).json;
    assert.deepEqual(health.dns, { enabled: true, host: '127.0.0.1', port, domain: 'discovery' });
  });
});
