// The live dashboard (`GET /`) at fleet size, in a real headless Chromium against a
// gateway on the embedded store: a registry of SCALE instances is shown as service
// counts first, a service's rows are drawn when it is opened, and a change updates
// its row or its count in place. The old page drew every instance (487,602 DOM nodes
// and 19.6 s at 40k). DASHBOARD_SCALE_INSTANCES=100000 measures the fleet-size
// targets by hand; the numbers are printed as test diagnostics.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from './helpers/chromium.ts';
import { eventually, startGateway, type TestGateway } from './helpers/gateway.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCREENSHOT = path.join(ROOT, 'test-output', 'dashboard-scale.png');
const WAIT = 10_000;
const SCALE = Number(process.env.DASHBOARD_SCALE_INSTANCES ?? 20_000);
const PER_SERVICE = 50;
const SERVICES = Math.ceil(SCALE / PER_SERVICE);
const BIG = 450; // one service larger than a page of rows (200)

const svc = (i: number) => `fleet-${String(i).padStart(4, '0')}`;
const row = (key: string) => `[data-instance="${key}"]`;

/** SCALE instances in services of PER_SERVICE, plus the service `big`, as /batch register operations. */
function fleet() {
  const ops = [];
  for (let k = 0; k < BIG; k++) {
    ops.push({ service: 'big', id: `b-${String(k).padStart(3, '0')}`, address: `10.254.${k >> 8}.${k & 255}`, port: 8080, ttl: 0 });
  }
  for (let i = 0; i < SCALE; i++) {
    const s = Math.floor(i / PER_SERVICE);
    const j = i % PER_SERVICE;
    ops.push({
      service: svc(s),
      id: `i-${String(j).padStart(3, '0')}`,
      address: `10.${s >> 8}.${s & 255}.${j + 1}`,
      port: 8080,
      tags: ['http'],
      metadata: { zone: `z${j % 3}` },
      ttl: 0,
    });
  }
  return ops;
}

// Resolves once the page has produced a frame: what a person sees, layout and paint included.
const nextFrame = (p: Page) => p.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))));

describe(
  `dashboard with ${SCALE} instances in a real browser`,
  {
    timeout: 180_000,
    skip: skipWithoutChromium,
  },
  () => {
    let gw: TestGateway;
    let browser: Browser | undefined;
    let page: Page;
    const pageErrors: string[] = [];
    let cards = 0; // service cards drawn before any scrolling
    let fillMs = 0;

    async function send(method: string, urlPath: string, body?: unknown): Promise<number> {
      const res = await gw.request(method, urlPath, body);
      assert.ok(res.status < 300, `${method} ${urlPath}: ${res.status} ${res.text}`);
      return res.status;
    }
    const cardNames = () => page.locator('[data-service]').evaluateAll((els) => els.map((e) => e.getAttribute('data-service')));
    const rowIds = (service: string) =>
      page.locator(`[data-service="${service}"] [data-instance]`).evaluateAll((els) => els.map((e) => e.getAttribute('data-instance')));
    const rowsAre = (service: string, n: number) =>
      page.waitForFunction(([s, k]) => document.querySelectorAll(`[data-service="${s}"] [data-instance]`).length === k, [
        service,
        n,
      ] as const);

    before(
      async () => {
        gw = await startGateway();
        const ops = fleet();
        const batches: (typeof ops)[] = [];
        for (let i = 0; i < ops.length; i += 128) batches.push(ops.slice(i, i + 128));
        const filling = Date.now();
        const sendNext = async (): Promise<void> => {
          for (let b = batches.pop(); b; b = batches.pop()) await send('POST', '/batch', { register: b });
        };
        await Promise.all([sendNext(), sendNext(), sendNext(), sendNext()]);
        // The fill is answered by the store; wait until the gateway's view has caught up with it, so
        // the paint below measures the page and not the backlog of a fill just made.
        await eventually(
          async () => {
            const res = await gw.request('GET', '/services');
            const services: { instances: number }[] = res.json?.services ?? [];
            return services.reduce((sum, s) => sum + s.instances, 0) === ops.length;
          },
          60_000,
          'the gateway to apply the fill',
        );
        fillMs = Date.now() - filling;
        browser = await launchChromium();
        const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
        context.setDefaultTimeout(WAIT);
        page = await context.newPage();
        page.on('pageerror', (e) => pageErrors.push(e.message));
      },
      { timeout: 120_000 },
    );

    after(
      async () => {
        await browser?.close().catch(() => undefined);
        await gw?.close();
      },
      { timeout: 20_000 },
    );

    it('paints service counts first, with a DOM that does not grow with the registry', { timeout: 60_000 }, async (t) => {
      const started = Date.now();
      await page.goto(gw.base + '/');
      const countsShown = ([first, n]: readonly [string, number]) => {
        const shown = /(\d+) instances/.exec(document.getElementById('summary')?.textContent ?? '');
        return shown !== null && Number(shown[1]) === n && document.querySelector(`[data-service="${first}"] .count`) !== null;
      };
      await page.waitForFunction(countsShown, ['big', SCALE + BIG] as const, { timeout: 60_000 });
      await nextFrame(page);
      const firstPaintMs = Date.now() - started;
      // Live: the snapshot has been drawn over the counts and a service can be opened.
      await page.waitForFunction(() => document.getElementById('conn-state')?.textContent === 'live', null, { timeout: 60_000 });
      await page.waitForFunction(countsShown, ['big', SCALE + BIG] as const);
      await page.locator(`[data-service="${svc(0)}"] button.toggle:enabled`).waitFor();
      await nextFrame(page);
      const liveMs = Date.now() - started;
      const called = Date.now();
      await page.evaluate(() => 1);
      const callMs = Date.now() - called;
      const elements = await page.evaluate(() => document.getElementsByTagName('*').length);
      cards = await page.locator('[data-service]').count();
      t.diagnostic(
        `filled by /batch in ${fillMs} ms; counts painted at ${firstPaintMs} ms, live at ${liveMs} ms, ` +
          `then a script call waited ${callMs} ms; ${elements} elements, ${cards} service cards`,
      );
      assert.ok(elements < 5000, `${elements} elements in the DOM`);
      assert.ok(cards > 0 && cards < SERVICES, `${cards} of ${SERVICES + 1} service cards drawn before any scrolling`);
      assert.equal(await page.locator('[data-instance]').count(), 0, 'no service is open at this size');
      assert.equal(await page.locator(`[data-service="${svc(0)}"] .count`).textContent(), String(PER_SERVICE));
      // Generous bounds for a loaded machine; the targets (< 2 s at 100k) are measured, not asserted.
      assert.ok(firstPaintMs < Math.max(5000, SCALE / 4), `first paint took ${firstPaintMs} ms`);
      assert.ok(liveMs < Math.max(8000, SCALE / 4), `going live took ${liveMs} ms`);
    });

    it('opens a service on a click: its rows, and no others, join the DOM', async (t) => {
      const clickMs = await page.evaluate(async (name) => {
        const toggle = document.querySelector<HTMLButtonElement>(`[data-service="${name}"] button.toggle`);
        if (!toggle) throw new Error(`no toggle for ${name}`);
        const clicked = performance.now();
        toggle.click();
        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))); // the frame that shows it
        return performance.now() - clicked;
      }, svc(1));
      t.diagnostic(`a click opened ${svc(1)} in ${clickMs.toFixed(1)} ms`);
      assert.equal((await rowIds(svc(1))).length, PER_SERVICE);
      assert.equal(await page.locator('[data-instance]').count(), PER_SERVICE, 'only the opened service has rows');
      assert.ok(clickMs < 1000, `opening a service took ${clickMs} ms`);
    });

    it('shows a change in an open service as its row, and in a closed one as its count', async (t) => {
      let changed = Date.now();
      await send('PUT', `/services/${svc(1)}/instances/i-new`, { address: '10.255.0.1', port: 9090, tags: ['canary'], ttl: 0 });
      await page.locator(row(`${svc(1)}/i-new`)).waitFor();
      await nextFrame(page);
      const changeMs = Date.now() - changed;
      changed = Date.now();
      await send('DELETE', `/services/${svc(1)}/instances/i-007`);
      await page.locator(row(`${svc(1)}/i-007`)).waitFor({ state: 'detached' });
      const removeMs = Date.now() - changed;
      t.diagnostic(`a registration showed in ${changeMs} ms, a removal in ${removeMs} ms`);
      const ids = await rowIds(svc(1));
      assert.equal(ids.length, PER_SERVICE);
      assert.deepEqual(ids, [...ids].sort(), 'rows stay sorted by id');
      assert.equal(await page.locator(`[data-service="${svc(1)}"] .count`).textContent(), String(PER_SERVICE));

      await send('PUT', `/services/${svc(2)}/instances/i-new`, { address: '10.255.0.2', port: 9090, ttl: 0 });
      await page.waitForFunction((name) => document.querySelector(`[data-service="${name}"] .count`)?.textContent === '51', svc(2));
      assert.equal((await rowIds(svc(2))).length, 0, 'a closed service draws no rows');
      assert.ok(changeMs < 5000, `a change took ${changeMs} ms to show`);
    });

    it('keeps a sorted window of rows for a service larger than a page, with more on demand', async () => {
      await page.locator('[data-service="big"] button.toggle').click();
      await rowsAre('big', 200);
      assert.match((await page.locator('[data-service="big"] [data-more-rows]').textContent()) ?? '', /200 of 450/);
      await send('PUT', '/services/big/instances/b-0005', { address: '10.254.9.9', port: 8080, ttl: 0 });
      await page.locator(row('big/b-0005')).waitFor();
      let ids = await rowIds('big');
      assert.deepEqual(
        [ids.length, ids[0], ids[1], ids.at(-1)],
        [200, 'big/b-000', 'big/b-0005', 'big/b-198'],
        'the window keeps its size',
      );
      await send('DELETE', '/services/big/instances/b-000');
      await page.locator(row('big/b-000')).waitFor({ state: 'detached' });
      ids = await rowIds('big');
      assert.deepEqual([ids.length, ids[0], ids.at(-1)], [200, 'big/b-0005', 'big/b-199'], 'a removal pulls the next row in');
      await page.locator('[data-service="big"] [data-more-rows]').click();
      await rowsAre('big', 400);
      assert.equal((await rowIds('big')).at(-1), 'big/b-399');
      await page.locator('[data-service="big"] button.toggle').click();
      await rowsAre('big', 0);
    });

    it('puts a new service in its sorted place among the cards and gives the place back when it empties', async () => {
      const before = await cardNames();
      await send('PUT', '/services/fleet-00005/instances/only', { address: '10.255.0.3', port: 9090, ttl: 0 });
      await page.locator('[data-service="fleet-00005"]').waitFor();
      assert.deepEqual(await cardNames(), [...before.slice(0, 2), 'fleet-00005', ...before.slice(2, -1)], 'the last card makes room');
      await send('DELETE', '/services/fleet-00005/instances/only');
      await page.locator('[data-service="fleet-00005"]').waitFor({ state: 'detached' });
      assert.deepEqual(await cardNames(), before, 'the card that made room comes back');
    });

    it('filters every service by name, and draws the next page of cards on scroll', async (t) => {
      const last = svc(SERVICES - 1);
      const typed = Date.now();
      await page.fill('#filter', last);
      await page.waitForFunction((name) => {
        const shown = document.querySelectorAll('[data-service]');
        return shown.length === 1 && shown[0]?.getAttribute('data-service') === name;
      }, last);
      t.diagnostic(`the filter answered in ${Date.now() - typed} ms`);
      await page.fill('#filter', '');
      await page.waitForFunction((n) => document.querySelectorAll('[data-service]').length === n, cards);
      await page.locator('#filter').blur();
      await mkdir(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT });
      await page.locator('#more-services').scrollIntoViewIfNeeded();
      await page.waitForFunction((n) => document.querySelectorAll('[data-service]').length > n, cards);
      assert.deepEqual(pageErrors, []);
    });
  },
);
