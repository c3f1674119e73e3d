// The node page (/node) in a real browser against a real hub and a real agent: Debian's Chromium
// driven by playwright-core, the hub started with `--agent <the agent's unix socket>`, both inside
// a network namespace this test creates (containers' bridge, veths and NAT never touch the
// host's network). A busybox rootfs is uploaded to the hub; the page starts a container from it,
// streams its output, lists it and its jobs, and terminates it — and nothing is left behind.
//
// The browser runs inside the namespace too (the hub listens on 127.0.0.1 there): Playwright
// talks to Chromium over --remote-debugging-pipe (fds 3 and 4), which `nsenter` and Debian's
// /usr/bin/chromium wrapper script keep across their exec, so a two-line wrapper script given as
// the executable is all it takes. launchBrowser() (test/helpers/browser.ts) always passes
// /usr/bin/chromium, so chromium.launch is pointed at the wrapper while it starts the browser.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../src/agent/client';
import { readMounts } from '../src/fs/mount-table';
import { type AgentProcess, inNetns, leftovers, makeNetns, startAgent } from './helpers/agent';
import { CHROMIUM, launchBrowser, type TestBrowser, type WebPage } from './helpers/browser';
import { BIN } from './helpers/cli';
import { type HubProcess, startHub } from './helpers/hub';
import { busyboxRootfsTar } from './helpers/tarballs';

let ns: string;
let tmp: string;
let agent: AgentProcess;
let hub: HubProcess;
let client: Client;
let browser: TestBrowser;
let token: string;
const FLIST = 'alice/busybox.flist';

/** Launches the helper's browser with Chromium entered into the namespace. */
async function browserInNetns(netns: string, dir: string): Promise<TestBrowser> {
  const wrapper = path.join(dir, 'chromium-in-netns');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec nsenter --net=/run/netns/${netns} -- ${CHROMIUM} "$@"\n`, { mode: 0o755 });
  const launch = chromium.launch;
  chromium.launch = (opts) => launch.call(chromium, { ...opts, executablePath: wrapper });
  try {
    return await launchBrowser();
  } finally {
    chromium.launch = launch;
  }
}


/** A full-page screenshot taken from the top (a scrolled page puts the sticky header mid-picture). */
async function shot(p: WebPage, name: string): Promise<void> {
  await p.page.evaluate(() => window.scrollTo(0, 0));
  await p.shot(name);
}

const containerIds = async (): Promise<string[]> => Object.keys(await client.json<Record<string, unknown>>('corex.list', {}));

/** Fills the start form and submits it; resolves with the new container's id (its table row). */
async function start(p: WebPage, command: string, name: string): Promise<string> {
  const before = new Set(await p.page.locator('tr[data-id]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id'))));
  await p.page.getByLabel('Flist', { exact: true }).selectOption(FLIST);
  await p.page.getByLabel('Command', { exact: true }).fill(command);
  await p.page.getByRole('textbox', { name: 'Name (optional)' }).fill(name);
  await p.page.getByRole('button', { name: 'Start container' }).click();
  const row = p.page.locator('tr[data-id]', { hasText: name });
  await row.waitFor({ timeout: 30_000 });
  const id = (await row.getAttribute('data-id'))!;
  expect(before.has(id)).toBe(false);
  return id;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-web-node-'));
  ns = makeNetns('webnode');
  agent = await startAgent({ netns: ns, args: ['--cache', path.join(tmp, 'cache'), '--mount-grace', '0'] });
  client = await agent.client();
  hub = await startHub({ netns: ns, args: ['--agent', agent.socket] });
  token = hub.token('alice');
  const tar = path.join(tmp, 'busybox.tar.gz');
  await busyboxRootfsTar(tar, { gzip: true });
  const [file, ...args] = inNetns(ns, [process.execPath, BIN, 'hub', 'upload', tar, '--hub', hub.url, '--token', token, '--name', 'busybox']);
  const up = await promisify(execFile)(file, args, { timeout: 60_000 });
  expect(up.stdout.trim().split('\n').pop()).toBe(`${hub.url}/${FLIST}`);
  browser = await browserInNetns(ns, tmp);
}, 120_000);

// a failed test must not leave its containers to the next one's "nothing left" checks
afterEach(async () => {
  if (!client) return;
  const ids = await containerIds();
  await Promise.all(ids.map((id) => client.json('corex.terminate', { container: Number(id) }, 60).catch(() => undefined)));
});

afterAll(async () => {
  await browser?.close();
  await hub?.stop();
  await agent?.stop();
  if (tmp && !readMounts().some((m) => m.mountPoint.startsWith(tmp))) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the node page', () => {
  it('logged out: the Node link shows (an agent is beside the hub) and the page asks to log in', async () => {
    const p = await browser.page(hub.url);
    await p.goto('/node');
    await expect.poll(() => p.page.locator('#nav-node').isVisible()).toBe(true);
    await p.page.getByRole('heading', { name: 'Log in to control this node' }).waitFor();
    expect(await p.page.locator('main').getByRole('link', { name: 'Log in', exact: true }).getAttribute('href')).toBe('/login?next=%2Fnode');
    expect(await p.page.locator('form.node-form').count()).toBe(0);
    await shot(p, 'node-logged-out');
    // logging in from there comes back to the node page
    await p.page.locator('main').getByRole('link', { name: 'Log in', exact: true }).click();
    await p.page.getByLabel('Token').fill(token);
    await p.page.getByRole('button', { name: 'Log in' }).click();
    await p.page.locator('form.node-form').waitFor();
    expect(new URL(p.page.url()).pathname).toBe('/node');
    await p.page.evaluate(() => localStorage.clear());
    p.expectClean();
    await p.close();
  });

  it('starts a container from an flist, streams its output live, lists it and its jobs, terminates it, leaves nothing', async () => {
    const t0 = Date.now();
    const p = await browser.page(hub.url, { token });
    await p.goto('/node');
    const { page } = p;
    // the flist picker is filled from the hub's repositories
    await expect.poll(() => page.locator('#node-flist option').evaluateAll((o) => o.map((x) => (x as HTMLOptionElement).value)), { timeout: 10_000 }).toContain(FLIST);
    await page.getByText('No containers are running.').waitFor();
    await shot(p, 'node-empty');

    // a command with stdout and stderr: both arrive, told apart, and the exit status
    const id = await start(p, 'echo hello; echo oops >&2', 'webtest');
    const out = page.locator('#node-output');
    await out.locator('.node-stdout', { hasText: 'hello' }).waitFor({ timeout: 20_000 });
    await out.locator('.node-stderr', { hasText: 'oops' }).waitFor();
    await expect.poll(() => page.locator('#node-exit').textContent(), { timeout: 20_000 }).toBe('Exited with status 0');
    expect(await page.locator('#node-exit').getAttribute('class')).toContain('node-exit-ok');
    expect(await out.getAttribute('role')).toBe('log'); // announced politely to screen readers
    // the table row matches what the agent says
    const row = page.locator(`tr[data-id="${id}"]`);
    expect(await row.locator('td').nth(1).textContent()).toBe('webtest');
    expect(await row.locator('td').nth(2).textContent()).toBe(FLIST);
    expect(await row.locator('.node-tag').allTextContents()).toEqual(['webtest']);
    expect(await row.locator('td').nth(6).textContent()).toMatch(/^([\d.]+ (B|KiB|MiB)|—)$/);
    const list = await client.json<Record<string, { container: { arguments: { root: string; hostname: string } } }>>('corex.list', {});
    expect(Object.keys(list)).toEqual([id]);
    expect(list[id].container.arguments).toMatchObject({ root: `${hub.url}/${FLIST}`, hostname: 'webtest' });
    await shot(p, 'node-ran');

    // after a reload the row's Output button shows that command's output again (the hub keeps it)
    await p.goto('/node');
    await row.getByRole('button', { name: `Show the output of container ${id}` }).click();
    await out.locator('.node-stdout', { hasText: 'hello' }).waitFor({ timeout: 10_000 });
    await expect.poll(() => page.locator('#node-exit').textContent()).toBe('Exited with status 0');

    // a second one that keeps running: its output arrives while it runs, and its job is listed
    const id2 = await start(p, 'echo started; sleep 300', 'sleeper');
    await out.locator('.node-stdout', { hasText: 'started' }).waitFor({ timeout: 20_000 });
    expect(await page.locator('#node-exit').textContent()).toBe('Running…');
    const job = page.locator('table.node-jobs tbody tr', { hasText: 'sleep 300' });
    await job.waitFor({ timeout: 15_000 });
    expect(await job.locator('td').nth(2).textContent()).toBe(`container ${id2}`);
    expect(await page.locator('table.node-containers tbody tr').count()).toBe(2);
    await shot(p, 'node-running');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot(p, 'node-running-dark');
    await page.emulateMedia({ colorScheme: 'light' });

    // terminate the running one: confirm in a dialog (Cancel first: nothing happens)
    const row2 = page.locator(`tr[data-id="${id2}"]`);
    await row2.getByRole('button', { name: `Terminate container ${id2}` }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await shot(p, 'node-confirm');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    expect(await containerIds()).toContain(id2);
    await row2.getByRole('button', { name: `Terminate container ${id2}` }).click();
    await dialog.getByRole('button', { name: 'Terminate' }).click();
    await row2.waitFor({ state: 'detached', timeout: 60_000 });
    // its command ended with the container: the output panel says so
    await expect.poll(() => page.locator('#node-exit').textContent(), { timeout: 20_000 }).toMatch(/^Exited with status (143 \(SIGTERM\)|137 \(SIGKILL\))/);

    // and the first one, by keyboard: focus its Terminate button, Enter, Enter on the dialog's button
    await row.getByRole('button', { name: `Terminate container ${id}` }).focus();
    await page.keyboard.press('Enter');
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Terminate' }).focus();
    await page.keyboard.press('Enter');
    await row.waitFor({ state: 'detached', timeout: 60_000 });
    await page.getByText('No containers are running.').waitFor();
    // the keyboard focus is not lost with the row (the 3-s refresh may empty the table before
    // the terminate handler moves focus, so wait for it)
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('node-containers-title');
    await shot(p, 'node-terminated');

    expect(await containerIds()).toEqual([]);
    expect(leftovers(agent)).toEqual([]);
    p.expectClean();
    await p.close();
    expect(Date.now() - t0).toBeLessThan(60_000);
  }, 90_000);

  it('the whole journey in the browser: log in, upload a rootfs, inspect it, run a container from its page, see the output', async () => {
    const p = await browser.page(hub.url);
    const { page } = p;
    await p.goto('/login');
    await page.getByLabel('Token').fill(token);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#login-user').waitFor();
    await p.goto('/upload');
    await page.getByLabel('File', { exact: true }).setInputFiles(path.join(tmp, 'busybox.tar.gz'));
    await page.getByLabel('Flist name (optional)').fill('journey');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.waitForURL('**/alice/journey.flist.md', { timeout: 60_000 });
    await page.getByRole('button', { name: /bin/ }).first().click(); // the tree opens /bin
    await page.getByText('busybox', { exact: true }).first().waitFor();
    await page.locator('#run-on-node').click();
    await expect.poll(() => page.getByLabel('Flist', { exact: true }).inputValue()).toBe('alice/journey.flist');
    await page.getByLabel('Command', { exact: true }).fill('echo journey done');
    await page.getByRole('button', { name: 'Start container' }).click();
    await page.locator('#node-output .node-stdout', { hasText: 'journey done' }).waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('#node-exit').textContent(), { timeout: 20_000 }).toBe('Exited with status 0');
    await shot(p, 'node-journey');
    p.expectClean();
    await p.close();
  }, 120_000);

  it('a command with 20,000 lines: the panel keeps at most 5,000, in order, and follows the bottom', async () => {
    const p = await browser.page(hub.url, { token });
    await p.goto('/node');
    const { page } = p;
    const t0 = Date.now();
    await start(p, 'seq 1 20000', 'lines');
    const out = page.locator('#node-output');
    await expect.poll(() => page.locator('#node-exit').textContent(), { timeout: 30_000 }).toBe('Exited with status 0');
    await out.locator('.node-stdout', { hasText: /^20000$/ }).waitFor();
    const shown = await out.evaluate((log) => ({
      numbers: [...log.querySelectorAll('.node-stdout')].map((l) => Number(l.textContent)),
      bottom: log.scrollHeight - log.scrollTop - log.clientHeight,
    }));
    expect(shown.numbers.length).toBeGreaterThan(500);
    expect(shown.numbers.length).toBeLessThanOrEqual(5000);
    // in order (not necessarily consecutive: the agent keeps the last 1,000 entries of a job's
    // stream list, so a reader slower than `seq` misses some upstream of the page)
    expect(shown.numbers.every((n, i) => i === 0 || n > shown.numbers[i - 1])).toBe(true);
    expect(shown.numbers.at(-1)).toBe(20000);
    expect(shown.bottom).toBeLessThan(2);
    const elapsed = Date.now() - t0;
    await shot(p, 'node-many-lines');
    p.expectClean();
    await p.close();
    expect(elapsed).toBeLessThan(20_000);
  });

  it('a hub without an agent: no Node link, and the page says how to get one', async () => {
    const lone = await startHub({ netns: ns });
    try {
      const p = await browser.page(lone.url, { token: lone.token('alice') });
      await p.goto('/node');
      await p.page.getByText('No agent runs beside this hub.').waitFor();
      expect(await p.page.locator('#nav-node').isVisible()).toBe(false);
      expect(await p.page.locator('form.node-form').count()).toBe(0);
      await shot(p, 'node-no-agent');
      p.expectClean();
      await p.close();
    } finally {
      await lone.stop();
    }
  });

  it('a start that fails shows the agent\'s error next to the form, and leaves nothing', async () => {
    const p = await browser.page(hub.url, { token });
    // the flist's page links to the node page with that flist picked in the form
    await p.goto(`/${FLIST}.md`);
    const run = p.page.locator('#run-on-node');
    await run.waitFor();
    expect(await run.getAttribute('href')).toBe(`/node?flist=${encodeURIComponent(FLIST)}`);
    await run.click();
    const { page } = p;
    await expect.poll(() => page.getByLabel('Flist', { exact: true }).inputValue()).toBe(FLIST);
    await page.getByLabel('or an flist URL').fill('http://127.0.0.1:1/x/y.flist');
    await page.getByLabel('Command', { exact: true }).fill('true');
    await page.getByRole('button', { name: 'Start container' }).click();
    const err = page.locator('#node-form-error');
    await err.waitFor({ state: 'visible', timeout: 30_000 });
    expect(await err.textContent()).toMatch(/127\.0\.0\.1:1/);
    await shot(p, 'node-start-error');
    expect(await containerIds()).toEqual([]);
    expect(leftovers(agent)).toEqual([]);
    // the failed request is the one console error Chromium logs by itself
    p.expectClean([/Failed to load resource: the server responded with a status of 502/]);
    await p.close();
  });
});
