// The client in a real headless Chromium: the package's client, bundled for browsers with
// esbuild, loaded into a page of the gateway's origin, follows a registration made elsewhere
// over the change stream and picks it locally.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from './helpers/chromium.ts';
import { startGateway, type TestGateway } from './helpers/gateway.ts';

describe('client in a browser', { timeout: 60_000, skip: skipWithoutChromium }, () => {
  let gw: TestGateway;
  let browser: Browser | undefined;
  let page: Page;
  const pageErrors: string[] = [];

  before(async () => {
    const bundle = await build({
      entryPoints: [fileURLToPath(new URL('../src/client/index.ts', import.meta.url))],
      bundle: true,
      format: 'iife',
      globalName: 'DiscoveryGateway',
      platform: 'browser',
      target: 'chrome110',
      write: false,
    });
    gw = await startGateway();
    browser = await launchChromium();
    page = await browser.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${gw.base}/health/live`);
    await page.addScriptTag({ content: bundle.outputFiles[0]!.text });
  });
  after(async () => {
    await browser?.close();
    await gw?.close();
  });

  it('follows a registration over the change stream and picks it locally', async () => {
    await page.evaluate(async () => {
      const { DiscoveryClient } = (window as unknown as { DiscoveryGateway: typeof import('../src/client/index.ts') }).DiscoveryGateway;
      const client = new DiscoveryClient({ gateways: location.origin });
      const watch = client.watch('shop');
      (window as unknown as { shop: unknown }).shop = watch;
      await watch.ready();
    });
    const registered = await gw.request('PUT', '/services/shop/instances/s-1', { address: '10.7.0.1', port: 7000, weight: 5 });
    assert.equal(registered.status, 201);
    const seen = await page.evaluate(async () => {
      type Live = import('../src/client/index.ts').Watch;
      const watch = (window as unknown as { shop: Live }).shop;
      while (watch.instances('shop').length === 0) await new Promise((r) => setTimeout(r, 20));
      return { ids: watch.instances('shop').map((i) => i.id), picked: watch.pick('shop')?.port, revision: watch.revision };
    });
    assert.deepEqual(seen.ids, ['s-1']);
    assert.equal(seen.picked, 7000);
    assert.equal(seen.revision, Number(registered.headers.get('x-registry-revision')));
    assert.deepEqual(pageErrors, []);
  });
});
