// The live dashboard (`GET /`) in a real headless Chromium against the real gateway
// (embedded store): it connects, follows registrations, status changes and removals
// over SSE without a reload, shows service data as text only, asks for a token on
// 401 and resumes a broken stream from the last event id.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from './helpers/chromium.ts';
import { freePort } from './helpers/ports.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCREENSHOT = path.join(ROOT, 'test-output', 'dashboard.png');
const WAIT = 10_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function instance(service: string, id: string, address: string, port: number, extra: Record<string, unknown> = {}) {
  return {
    service,
    id,
    address,
    port,
    tags: ['http'],
    metadata: {},
    weight: 100,
    status: 'up',
    ttl: 0,
    registeredAt: new Date(Date.now() - 90_000).toISOString(),
    revision: 1,
    ...extra,
  };
}

describe(
  'dashboard in a real browser',
  {
    timeout: 180_000,
    skip: skipWithoutChromium,
  },
  () => {
    let gateway: ChildProcess | undefined;
    let gatewayLog = '';
    let base = '';
    let browser: Browser | undefined;
    let context: BrowserContext | undefined;
    let page: Page;
    const pageErrors: string[] = [];

    async function api(method: string, urlPath: string, body?: unknown): Promise<Response> {
      return fetch(base + urlPath, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(WAIT),
      });
    }
    async function register(service: string, id: string, body: Record<string, unknown>): Promise<void> {
      const res = await api('PUT', `/services/${service}/instances/${id}`, body);
      assert.ok(res.status === 201 || res.status === 200, `register ${service}/${id}: ${res.status} ${await res.text()}`);
    }
    const row = (key: string) => `[data-instance="${key}"]`;
    const connState = (p: Page) => p.locator('#conn-state').textContent();
    async function waitLive(p: Page): Promise<void> {
      await p.waitForFunction(() => document.getElementById('conn-state')?.textContent === 'live', null, { timeout: WAIT });
    }

    before(
      async () => {
        const port = await freePort();
        base = `http://127.0.0.1:${port}`;
        const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' };
        for (const k of ['ETCD_ENDPOINTS', 'AUTH_TOKENS_FILE', 'RATE_LIMIT_MAX', 'SSE_MAX_STREAMS', 'TLS_CERT_FILE', 'TLS_KEY_FILE']) {
          delete env[k];
        }
        gateway = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
        const keep = (chunk: Buffer) => {
          gatewayLog = (gatewayLog + chunk.toString()).slice(-8000);
        };
        gateway.stdout?.on('data', keep);
        gateway.stderr?.on('data', keep);
        const deadline = Date.now() + 45_000;
        for (;;) {
          if (gateway.exitCode !== null || gateway.signalCode !== null) {
            throw new Error(`gateway exited (${gateway.exitCode ?? gateway.signalCode}) before ready:\n${gatewayLog}`);
          }
          try {
            const res = await fetch(base + '/health/ready', { signal: AbortSignal.timeout(2000) });
            if (res.status === 200) break;
          } catch {
            /* not listening yet */
          }
          if (Date.now() > deadline) throw new Error(`gateway not ready within 45 s:\n${gatewayLog}`);
          await sleep(150);
        }
        browser = await launchChromium();
        context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
        context.setDefaultTimeout(WAIT);
        page = await context.newPage();
        page.on('pageerror', (e) => pageErrors.push(e.message));
        page.on('dialog', (d) => {
          pageErrors.push(`dialog opened: ${d.message()}`);
          void d.dismiss();
        });
      },
      { timeout: 90_000 },
    );

    after(
      async () => {
        await browser?.close().catch(() => undefined);
        if (gateway && gateway.exitCode === null && gateway.signalCode === null) {
          const exited = new Promise<void>((r) => gateway?.once('exit', () => r()));
          gateway.kill('SIGTERM');
          const t = setTimeout(() => gateway?.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(t);
        }
      },
      { timeout: 20_000 },
    );

    it('serves the page and goes live with a revision', { timeout: 30_000 }, async () => {
      const res = await page.goto(base + '/', { timeout: WAIT });
      assert.equal(res?.status(), 200);
      assert.match(res?.headers()['content-type'] ?? '', /text\/html/);
      await waitLive(page);
      await page.waitForFunction(() => /^\d+$/.test(document.getElementById('revision')?.textContent ?? ''), null, { timeout: WAIT });
      await page.evaluate(() => {
        (window as unknown as { __noReload?: boolean }).__noReload = true;
      });
    });

    it('shows a new instance without a reload', { timeout: 30_000 }, async () => {
      await register('web', 'w-1', { address: '10.0.0.1', port: 80, tags: ['http'], ttl: 0 });
      const r = page.locator(row('web/w-1'));
      await r.waitFor({ state: 'visible' });
      const text = await r.textContent();
      assert.match(text ?? '', /10\.0\.0\.1:80/);
      assert.equal(await r.locator('.chip').first().textContent(), 'http');
      assert.equal(await r.locator('.badge').textContent(), 'up');
      assert.equal(await page.locator('[data-service="web"]').count(), 1);
      assert.equal(await page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload), true, 'page reloaded');
      assert.equal(await connState(page), 'live');
    });

    it('shows a status change in the badge', { timeout: 30_000 }, async () => {
      const res = await api('PUT', '/services/web/instances/w-1/heartbeat', { status: 'draining' });
      assert.equal(res.status, 200, await res.text());
      await page.waitForFunction((sel) => document.querySelector(sel + ' .badge')?.textContent === 'draining', row('web/w-1'), {
        timeout: WAIT,
      });
      assert.equal(await page.locator(row('web/w-1') + ' .badge.draining').count(), 1);
    });

    it('removes a deregistered instance and says why it left', { timeout: 30_000 }, async () => {
      const res = await api('DELETE', '/services/web/instances/w-1');
      assert.equal(res.status, 204);
      await page.locator(row('web/w-1')).waitFor({ state: 'detached' });
      const item = page.locator('#feed li[data-feed-type="deregister"]', { hasText: 'web/w-1' }).first();
      await item.waitFor();
      assert.equal(await item.getAttribute('data-reason'), 'deregistered');
      assert.match((await item.textContent()) ?? '', /deregistered/);
      assert.equal(await page.locator('[data-service="web"]').count(), 0, 'an empty service is no longer listed');
    });

    it('shows service data as text, never as markup', { timeout: 30_000 }, async () => {
      const evil = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
      await register('web', 'evil', { address: '10.0.0.66', port: 8080, ttl: 0, metadata: { note: evil, '<b>key</b>': '<i>v</i>' } });
      const r = page.locator(row('web/evil'));
      await r.waitFor();
      await sleep(500); // give an injected onerror handler the time to fire
      assert.equal(await r.locator('img, script, b, i').count(), 0);
      assert.ok(((await r.textContent()) ?? '').includes('note=<img src=x onerror="window.__xss=1">'));
      assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
      assert.deepEqual(pageErrors, []);
      assert.equal((await api('DELETE', '/services/web/instances/evil')).status, 204);
      await r.waitFor({ state: 'detached' });
    });

    it('lists services sorted, filters them and takes a screenshot', { timeout: 40_000 }, async () => {
      await register('web', 'web-a', {
        address: '10.0.1.10',
        port: 8080,
        tags: ['http', 'v2'],
        metadata: { zone: 'eu-1', version: '2.3.1' },
        ttl: 0,
      });
      await register('web', 'web-b', { address: '10.0.1.11', port: 8080, tags: ['http'], status: 'draining', ttl: 0, weight: 50 });
      await register('payments', '10.0.2.7:9000', { address: '10.0.2.7', port: 9000, tags: ['grpc'], metadata: { zone: 'eu-2' }, ttl: 0 });
      await register('payments', '10.0.2.8:9000', { address: '10.0.2.8', port: 9000, tags: ['grpc'], status: 'down', ttl: 30 });
      await register('search', 's-1', { address: 'search-1.internal', port: 9200, tags: ['es', 'primary'], weight: 200, ttl: 0 });
      for (const key of ['web/web-a', 'web/web-b', 'payments/10.0.2.7:9000', 'payments/10.0.2.8:9000', 'search/s-1']) {
        await page.locator(row(key)).waitFor();
      }
      const names = await page.locator('[data-service]').evaluateAll((els) => els.map((e) => e.getAttribute('data-service')));
      assert.deepEqual(names, ['payments', 'search', 'web']);
      assert.equal(await page.locator('[data-service="payments"] .count').textContent(), '2');

      await page.fill('#filter', 'pay');
      await page.waitForFunction(() => document.querySelectorAll('[data-service]').length === 1);
      assert.equal(await page.locator('[data-service="payments"]').count(), 1);
      await page.fill('#filter', '');
      await page.waitForFunction(() => document.querySelectorAll('[data-service]').length === 3);

      await sleep(1800); // let the "just changed" highlight fade
      await page.locator('#filter').blur();
      await mkdir(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      assert.ok((await stat(SCREENSHOT)).size > 5000);
    });

    it('asks for a token on 401, keeps it in sessionStorage and passes it to the stream', { timeout: 40_000 }, async () => {
      assert.ok(browser);
      const ctx = await browser.newContext();
      ctx.setDefaultTimeout(WAIT);
      try {
        const seen: { services: string[]; events: string[] } = { services: [], events: [] };
        // The gateway under test is open: make /services answer as a gateway with tokens would.
        await ctx.route(/\/services(\?.*)?$/, async (route) => {
          const auth = (await route.request().allHeaders())['authorization'] ?? '';
          seen.services.push(auth);
          if (auth !== 'Bearer s3cret') {
            await route.fulfill({
              status: 401,
              contentType: 'application/problem+json',
              body: JSON.stringify({
                type: 'about:blank',
                title: 'Unauthorized',
                status: 401,
                detail: 'token required',
                code: 'unauthorized',
              }),
            });
          } else {
            await route.continue();
          }
        });
        await ctx.route(/\/events(\?.*)?$/, async (route) => {
          seen.events.push(route.request().url());
          await route.continue();
        });
        const p = await ctx.newPage();
        await p.goto(base + '/');
        await p.locator('#token-box').waitFor({ state: 'visible' });
        assert.equal(seen.events.length, 0, 'no stream before the token');
        assert.notEqual(await connState(p), 'live');
        await p.fill('#token-input', 'wrong');
        await p.press('#token-input', 'Enter');
        await p.waitForFunction(() => (document.getElementById('token-error')?.textContent ?? '').length > 0);
        assert.equal(await p.evaluate(() => Object.values({ ...sessionStorage }).includes('wrong')), false, 'a rejected token is dropped');
        await p.fill('#token-input', 's3cret');
        await p.press('#token-input', 'Enter');
        await waitLive(p);
        assert.equal(await p.locator('#token-box').isVisible(), false);
        assert.ok(await p.evaluate(() => Object.values({ ...sessionStorage }).includes('s3cret')), 'token kept in sessionStorage');
        assert.ok(seen.services.includes('Bearer s3cret'));
        const last = new URL(seen.events.at(-1) ?? base);
        assert.equal(last.searchParams.get('access_token'), 's3cret');
        await p.locator(row('search/s-1')).waitFor();
      } finally {
        await ctx.close();
      }
    });

    it('resumes from the last event id when the stream breaks or closes', { timeout: 40_000 }, async () => {
      assert.ok(browser);
      const ctx = await browser.newContext();
      ctx.setDefaultTimeout(WAIT);
      try {
        const requests: { url: string }[] = [];
        const sse = (events: string) => ({
          status: 200,
          headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
          body: events,
        });
        const ev = (type: string, id: number, data: unknown) => `event: ${type}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
        await ctx.route(/\/events(\?.*)?$/, async (route) => {
          const n = requests.push({ url: route.request().url() });
          if (n === 1) {
            // A snapshot, then the stream ends: the browser reconnects by itself with Last-Event-ID.
            await route.fulfill(
              sse('retry: 200\n\n' + ev('snapshot', 7, { revision: 7, services: { fake: [instance('fake', 'f-1', '10.9.0.1', 81)] } })),
            );
          } else if (n === 2) {
            await route.fulfill({
              status: 503,
              contentType: 'application/problem+json',
              body: '{"status":503,"code":"store-unavailable"}',
            });
          } else if (n === 3) {
            const inst = instance('fake', 'f-2', '10.9.0.2', 82, { revision: 8 });
            await route.fulfill(
              sse('retry: 60000\n\n' + ev('register', 8, { type: 'register', service: 'fake', id: 'f-2', revision: 8, instance: inst })),
            );
          } else {
            await route.fulfill(sse('retry: 60000\n\n'));
          }
        });
        const p = await ctx.newPage();
        await p.goto(base + '/');
        await p.locator(row('fake/f-1')).waitFor();
        // The 503 closes the EventSource for good: the page opens a new one with ?lastEventId=.
        await p.locator(row('fake/f-2')).waitFor({ timeout: 15_000 });
        assert.ok(requests.length >= 3);
        // Request 2 is the browser's own retry (it carries Last-Event-ID: 7 on the wire, which the
        // interception layer does not show); the page must not have replaced the EventSource yet.
        assert.equal(new URL(requests[1]?.url ?? base).searchParams.get('lastEventId'), null, 'native retry after a dropped stream');
        assert.equal(new URL(requests[2]?.url ?? base).searchParams.get('lastEventId'), '7', 'new EventSource resumes with ?lastEventId=');
        assert.equal(await p.locator(row('fake/f-1')).count(), 1, 'state kept across the reconnect');
        await p.waitForFunction(() => document.getElementById('revision')?.textContent === '8');
      } finally {
        await ctx.close();
      }
    });
  },
);
