// The one way browser tests find and start Chromium. Outside CI a missing browser skips the
// suite; in CI it fails it (launchChromium throws), so the browser tests cannot silently vanish.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = process.env.CI === 'true';

/** The `skip` option for a browser suite. */
export const skipWithoutChromium: string | false =
  !HAVE_CHROMIUM && !IN_CI ? `chromium not found at ${CHROMIUM} (set CHROMIUM_BIN)` : false;

/** Headless Chromium with the background traffic that slows a loaded machine turned off. */
export async function launchChromium(): Promise<Browser> {
  if (!HAVE_CHROMIUM) throw new Error(`chromium not found at ${CHROMIUM} (CI=true: the browser test must run)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-quic',
      '--disable-sync',
    ],
  });
}
