// A real browser for the web tests: playwright-core driving Debian's Chromium (/usr/bin/chromium,
// installed by scripts/setup.sh), headless, with a fresh profile per browser.
//
//   const b = await launchBrowser();                 // once per file (beforeAll)
//   const p = await b.page(hub.url, { token });      // a new context: own localStorage, logged in
//   await p.goto('/upload');                         // paths are relative to the hub
//   await p.shot('upload');                          // test/artifacts/web/upload.png
//   p.expectClean();                                 // no console errors, page errors, CSP violations
//   await b.close();                                 // afterAll
//
// The login token lives in localStorage under TOKEN_KEY (the shell in web/js/app.js reads it).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const TOKEN_KEY = 'g8os.token';
export const ARTIFACTS = path.resolve(__dirname, '..', 'artifacts', 'web');

export interface WebPage {
  page: Page;
  context: BrowserContext;
  /** Navigate to a hub path ('/upload') and wait for the page to have rendered (main[aria-busy=false]). */
  goto(p: string): Promise<void>;
  /** Full-page screenshot to test/artifacts/web/<name>.png; returns the file path. */
  shot(name: string): Promise<string>;
  /** Console errors, uncaught page errors and CSP violations seen so far. */
  problems(): string[];
  /** Throw when problems() has anything not matched by one of `allow`. */
  expectClean(allow?: RegExp[]): void;
  close(): Promise<void>;
}

export interface TestBrowser {
  browser: Browser;
  page(hubUrl: string, opts?: { token?: string; width?: number; height?: number }): Promise<WebPage>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup.sh (it installs the chromium package)`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  const pages = new Set<WebPage>();
  return {
    browser,
    async page(hubUrl, opts = {}) {
      // A new context is a fresh profile (own storage, cookies, cache).
      const context = await browser.newContext({
        baseURL: hubUrl,
        viewport: { width: opts.width ?? 1280, height: opts.height ?? 800 },
        acceptDownloads: false,
      });
      // Nothing may leave the hub: any other origin is blocked and recorded.
      const origin = new URL(hubUrl).origin;
      const seen: string[] = [];
      await context.route(
        (u) => u.origin !== origin && u.protocol.startsWith('http'),
        async (route) => {
          seen.push(`external request: ${route.request().url()}`);
          await route.abort();
        },
      );
      if (opts.token !== undefined) {
        await context.addInitScript(
          ([key, token]) => {
            if (!sessionStorage.getItem('g8os.test.init')) {
              sessionStorage.setItem('g8os.test.init', '1');
              localStorage.setItem(key, token);
            }
          },
          [TOKEN_KEY, opts.token] as const,
        );
      }
      // CSP violations are also console errors in Chromium, but record them explicitly.
      await context.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => {
          console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}`);
        });
      });
      const page = await context.newPage();
      page.on('console', (m) => {
        if (m.type() === 'error') seen.push(`console: ${m.text()}`);
      });
      page.on('pageerror', (e) => seen.push(`page error: ${e.message}`));
      const wp: WebPage = {
        page,
        context,
        async goto(p) {
          await page.goto(p);
          await page.waitForSelector('main#main[aria-busy="false"]', { timeout: 10_000 });
        },
        async shot(name) {
          fs.mkdirSync(ARTIFACTS, { recursive: true });
          const file = path.join(ARTIFACTS, `${name}.png`);
          await page.evaluate(() => window.scrollTo(0, 0)); // a sticky header stays at the top of the shot
          await page.screenshot({ path: file, fullPage: true });
          return file;
        },
        problems: () => [...seen],
        expectClean(allow = []) {
          const bad = seen.filter((s) => !allow.some((re) => re.test(s)));
          if (bad.length) throw new Error(`browser problems:\n  ${bad.join('\n  ')}`);
        },
        async close() {
          pages.delete(wp);
          await context.close().catch(() => undefined);
        },
      };
      pages.add(wp);
      return wp;
    },
    async close() {
      for (const p of [...pages]) await p.close();
      await browser.close().catch(() => undefined);
    },
  };
}

/** A scratch file for uploads through <input type=file>. */
export function scratchFile(name: string, data: Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-web-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return file;
}
