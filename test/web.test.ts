// The hub's pages in a real browser (Debian's Chromium through playwright-core) against a real hub
// process: upload through the page with progress, the flist page (metadata, readme, tree by mouse
// and keyboard), search, home and repository pages, My repository (rename, link, tag, merge,
// delete), and the error paths (bad file, not logged in, read-only hub). Every page is saved as
// a screenshot under test/artifacts/web/; no console errors, CSP violations or requests leaving
// the hub are allowed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type TestBrowser, type WebPage } from './helpers/browser';
import { type HubProcess, startHub } from './helpers/hub';
import { dockerSave, packImage } from './helpers/oci';
import { everyTypeEntries, type FixtureEntry, T0, writeTar } from './helpers/tarballs';

const README = [
  '# Fixture rootfs',
  '',
  'A tree with **every** kind of entry, for the web tests.',
  '',
  '- regular files, big and small',
  '- symlinks, devices, a fifo',
  '',
  '```sh',
  'g8os flist ls fixture.flist /',
  '```',
  '',
  '![a remote picture](https://example.invalid/picture.png)',
  '',
  '<script>window.__pwned = 1</script><p style="color:red" onclick="alert(1)">styled</p>',
  '',
].join('\n');

/** Statuses the tests provoke on purpose (the browser logs each as a console error). */
const EXPECTED = [/status of (400|401|404)/];

let hub: HubProcess;
let roHub: HubProcess;
let browser: TestBrowser;
let token: string;
let dir: string;
let tarball: string;
let image: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'g8os-web-'));
  const [h, ro, b] = await Promise.all([startHub(), startHub({ args: ['--readonly'] }), launchBrowser()]);
  hub = h;
  roHub = ro;
  browser = b;
  token = hub.token('alice');

  const readme: FixtureEntry = { path: '.README.md', type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content: Buffer.from(README) };
  tarball = path.join(dir, 'fixture.tar.gz');
  fs.writeFileSync(tarball, await writeTar([readme, ...everyTypeEntries()], { gzip: true }));

  const layer: FixtureEntry[] = [
    { path: 'app', type: 'dir', mode: 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0 },
    { path: 'app/server.sh', type: 'file', mode: 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: T0, content: Buffer.from('#!/bin/sh\necho serving\n') },
  ];
  const img = await dockerSave({
    ref: 'demo/webapp:1.0',
    layers: [{ entries: layer, gzip: true }],
    config: { Entrypoint: ['/app/server.sh'], Cmd: ['--port', '8080'], Env: ['PATH=/usr/bin:/bin', 'GREETING=hello web'], ExposedPorts: { '8080/tcp': {} }, Volumes: { '/data': {} }, WorkingDir: '/app' },
  });
  image = path.join(dir, 'webapp-image.tar');
  fs.writeFileSync(image, await packImage(img.files));
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all([hub?.stop(), roHub?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function open(p: string, opts: { token?: string; hubUrl?: string } = {}): Promise<WebPage> {
  const page = await browser.page(opts.hubUrl ?? hub.url, { token: opts.token });
  await page.goto(p);
  return page;
}

const text = (p: WebPage, sel: string): Promise<string> => p.page.locator(sel).first().innerText();

describe('web pages', () => {
  it('logs in with a token and shows the user', async () => {
    const p = await open('/login');
    await p.page.getByLabel('Token').fill('not-a-token');
    await p.page.getByRole('button', { name: 'Log in' }).click();
    await p.page.getByText('The hub refused this token').waitFor();
    await p.page.getByLabel('Token').fill(token);
    await p.page.getByRole('button', { name: 'Log in' }).click();
    await p.page.locator('#login-user').waitFor();
    expect(await text(p, '#login-user')).toBe('alice');
    expect(await text(p, '#session')).toContain('alice');
    expect(await p.page.evaluate(() => localStorage.getItem('g8os.token'))).toBe(token);
    await p.shot('login');
    // logging out clears the token
    await p.page.locator('#session').getByRole('button', { name: 'Log out' }).click();
    await p.page.locator('#session').getByRole('link', { name: 'Log in' }).waitFor();
    expect(await p.page.evaluate(() => localStorage.getItem('g8os.token'))).toBeNull();
    p.expectClean(EXPECTED);
    await p.close();
  });

  it('refuses to upload before login: "log in first", nothing sent', async () => {
    const p = await open('/upload');
    const posts: string[] = [];
    p.page.on('request', (r) => r.method() === 'POST' && posts.push(r.url()));
    expect(await text(p, '#login-hint')).toContain('Log in');
    await p.page.getByLabel('File', { exact: true }).setInputFiles(tarball);
    await p.page.getByRole('button', { name: 'Upload' }).click();
    await p.page.locator('#upload-error').getByText('log in first').waitFor();
    expect(posts).toEqual([]);
    await p.shot('upload-logged-out');
    p.expectClean();
    await p.close();
  });

  it('uploads a tarball with progress to 100 % and lands on its page: metadata, readme, tree', async () => {
    const p = await open('/upload', { token });
    const { page } = p;
    await page.getByLabel('File', { exact: true }).setInputFiles(tarball);
    await page.getByRole('button', { name: 'Upload' }).click();
    // both bars reach 100 % before the page moves on to the flist
    await page.waitForFunction(() => (document.getElementById('transfer-bar') as HTMLProgressElement | null)?.value === 100);
    await page.waitForFunction(() => (document.getElementById('processing-bar') as HTMLProgressElement | null)?.value === 100);
    expect(await text(p, '#transfer-pct')).toBe('100 %');
    expect(await text(p, '#processing-pct')).toBe('100 %');
    await p.shot('upload-done');
    await page.waitForURL('**/alice/fixture.flist.md');
    await page.waitForSelector('main#main[aria-busy="false"]');
    await page.locator('#tree li[data-path="/etc"]').waitFor();

    expect(await text(p, 'h1')).toBe('fixture.flist');
    // readme rendered and sanitised: markdown → HTML, no script, no inline style, no remote image
    const readme = page.locator('#readme');
    await readme.locator('strong', { hasText: 'every' }).waitFor();
    expect(await readme.locator('li').count()).toBe(2);
    expect(await readme.locator('pre code').innerText()).toContain('g8os flist ls');
    expect(await readme.locator('script, img, [style], [onclick]').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    // totals and commands
    const totals = await text(p, '#tree-totals');
    expect(totals).toMatch(/files/);
    expect(await page.locator('.command code').allInnerTexts()).toEqual([
      `g8os mount ${hub.url}/alice/fixture.flist /mnt/fixture`,
      `g8os container run ${hub.url}/alice/fixture.flist -- sh`,
    ]);
    expect(await page.getByRole('link', { name: 'Download .flist' }).getAttribute('href')).toBe('/alice/fixture.flist');
    const copy = page.locator('.command').first().getByRole('button', { name: 'Copy' });
    await copy.click();
    await page.locator('.command').first().getByRole('button', { name: 'Copied' }).waitFor();
    const md5 = await page.evaluate(async () => (await fetch('/alice/fixture.flist.md5')).text());
    expect(await text(p, '#metadata')).toContain(md5.trim());

    // tree: a click opens /etc, with modes and owners
    await page.locator('li[data-path="/etc"] > .tree-row button').click();
    const secret = page.locator('li[data-path="/etc/secret"] > .tree-row');
    await secret.waitFor();
    expect(await secret.locator('.tree-mode').innerText()).toBe('-rw-------');
    expect(await secret.locator('.tree-owner').innerText()).toBe('root:root');
    expect(await page.locator('li[data-path="/etc"] > .tree-row button').getAttribute('aria-expanded')).toBe('true');
    // keyboard: Enter opens /links (symlink targets), Space opens /home, → opens /home/user
    const links = page.locator('li[data-path="/links"] > .tree-row button');
    await links.focus();
    await page.keyboard.press('Enter');
    const abs = page.locator('li[data-path="/links/absolute"] > .tree-row');
    await abs.waitFor();
    expect(await abs.locator('.tree-target').innerText()).toContain('/etc/hostname');
    expect(await abs.locator('.tree-mode').innerText()).toBe('lrwxrwxrwx');
    await page.locator('li[data-path="/home"] > .tree-row button').focus();
    await page.keyboard.press('Space');
    const userDir = page.locator('li[data-path="/home/user"] > .tree-row button');
    await userDir.waitFor();
    await userDir.focus();
    await page.keyboard.press('ArrowRight');
    const profile = page.locator('li[data-path="/home/user/.profile"] > .tree-row');
    await profile.waitFor();
    expect(await profile.locator('.tree-owner').innerText()).toBe('user:user');
    // devices and their modes
    await page.locator('li[data-path="/dev"] > .tree-row button').click();
    await page.locator('li[data-path="/dev/null"]').waitFor();
    expect(await page.locator('li[data-path="/dev/null"] .tree-mode').innerText()).toBe('crw-rw-rw-');
    expect(await page.locator('li[data-path="/dev/null"] .tree-size').innerText()).toBe('1,3');
    // Enter again closes /links
    await links.focus();
    await page.keyboard.press('Enter');
    expect(await links.getAttribute('aria-expanded')).toBe('false');
    expect(await abs.isVisible()).toBe(false);
    await p.shot('flist');
    p.expectClean();
    await p.close();
  });

  it('uploads a Docker image tarball (detected) and shows entrypoint, environment, ports, volumes', async () => {
    const p = await open('/upload', { token });
    const { page } = p;
    await page.getByLabel('File', { exact: true }).setInputFiles(image);
    await page.getByText('looks like a container image').waitFor();
    expect(await page.getByRole('radio', { name: /Docker/ }).isChecked()).toBe(true);
    await page.getByLabel('Flist name').fill('webapp');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.waitForURL('**/alice/webapp.flist.md', { timeout: 20_000 });
    await page.waitForSelector('main#main[aria-busy="false"]');
    const meta = page.locator('#metadata');
    expect(await meta.getByRole('list', { name: 'Entrypoint arguments' }).locator('li').allInnerTexts()).toEqual(['/app/server.sh', '--port', '8080']);
    expect(await meta.getByRole('table', { name: 'Environment variables' }).innerText()).toContain('hello web');
    expect(await meta.getByRole('list', { name: 'Exposed ports' }).innerText()).toContain('8080');
    expect(await meta.getByRole('list', { name: 'Volumes' }).innerText()).toContain('/data');
    expect(await page.locator('.command code').allInnerTexts()).toContain(`g8os container run ${hub.url}/alice/webapp.flist`);
    await page.locator('li[data-path="/app"] > .tree-row button').click();
    await page.locator('li[data-path="/app/server.sh"]').waitFor();
    await p.shot('flist-image');
    p.expectClean();
    await p.close();
  });

  it('home, repository and search pages list the flists', async () => {
    const p = await open('/');
    const { page } = p;
    const row = page.locator('#repo-list tr', { hasText: 'alice' });
    await row.waitFor();
    expect(await row.innerText()).toMatch(/alice\s+2\s+0\s+0/);
    await page.getByLabel('Filter repositories by name').fill('nobody');
    await page.getByText('No repository matches').waitFor();
    await page.getByLabel('Filter repositories by name').fill('ali');
    await p.shot('home');
    await row.getByRole('link', { name: /alice/ }).click();
    await page.waitForURL('**/alice');
    await page.waitForSelector('main#main[aria-busy="false"]');
    expect(await page.locator('table.data tbody tr').count()).toBe(2);
    await p.shot('repository');

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Search' }).click();
    await page.waitForSelector('main#main[aria-busy="false"]');
    await page.locator('#search-status', { hasText: 'Recently updated' }).waitFor();
    expect(await page.locator('#search-results tbody tr').count()).toBe(2);
    await page.getByLabel('Search flists by name').fill('FIXT');
    await page.locator('#search-status', { hasText: 'matches “FIXT”' }).waitFor();
    expect(page.url()).toContain('/search?q=FIXT');
    expect(await text(p, '#search-status')).toContain('1 flist matches');
    await p.shot('search');
    await page.getByRole('link', { name: 'fixture.flist' }).click();
    await page.waitForURL('**/alice/fixture.flist.md');
    await page.goBack();
    await page.getByRole('link', { name: 'fixture.flist' }).waitFor();
    p.expectClean();
    await p.close();
  });

  it('My repository: link, tag, rename, merge, delete — and shows the hub\'s errors', async () => {
    const p = await open('/me', { token });
    const { page } = p;
    const pick = async (name: string): Promise<void> => page.getByRole('checkbox', { name: `Select ${name}` }).check();
    const act = async (button: string, value: string, submit: string): Promise<void> => {
      await page.locator('#toolbar, .toolbar').getByRole('button', { name: button }).click();
      await page.locator('#action-input').fill(value);
      await page.locator('#action-panel').getByRole('button', { name: submit }).click();
    };
    const names = async (): Promise<string[]> => page.locator('#me-list tr[data-name]').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.name!));
    await page.locator('#me-list tr[data-name="fixture.flist"]').waitFor();

    // link
    await pick('fixture.flist');
    await act('Link', 'fixture-latest', 'Create link');
    await page.locator('#me-list tr[data-name="fixture-latest.flist"]').waitFor();
    expect(await page.locator('#me-list tr[data-name="fixture-latest.flist"]').innerText()).toContain('alice/fixture.flist');

    // tag two flists
    await pick('fixture.flist');
    await pick('webapp.flist');
    await act('Tag', 'v1', 'Tag');
    await page.locator('#me-tags [data-tag="v1"]').waitFor();
    expect(await page.locator('#me-tags [data-tag="v1"] li').count()).toBe(2);

    // rename: the old name is gone
    await pick('webapp.flist');
    expect(await page.getByRole('button', { name: 'Merge' }).isDisabled()).toBe(true);
    await act('Rename', 'app', 'Rename');
    await page.locator('#me-list tr[data-name="app.flist"]').waitFor();
    expect(await names()).not.toContain('webapp.flist');
    const search = await page.evaluate(async () => (await fetch('/api/ui/search?q=webapp')).json());
    expect(search.results).toEqual([]);

    // renaming onto an existing name asks first (the hub would replace it)
    await pick('app.flist');
    await act('Rename', 'fixture', 'Rename');
    await page.getByRole('dialog', { name: 'Replace fixture.flist?' }).getByRole('button', { name: 'Cancel' }).click();
    // a refused action shows the hub's message: a link may not replace a flist
    await page.locator('#action-panel').getByRole('button', { name: 'Cancel' }).click();
    await act('Link', 'fixture', 'Create link');
    const err = page.locator('#action-error [role=alert]');
    await err.waitFor();
    expect(await err.innerText()).toContain('link destination is already a file');
    await page.locator('#action-panel').getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('checkbox', { name: 'Select app.flist' }).uncheck();

    // merge in picking order
    await pick('app.flist');
    await pick('fixture.flist');
    expect(await text(p, '#me-selection')).toContain('app.flist, fixture.flist');
    await act('Merge', 'combo', 'Merge');
    await page.locator('#me-list tr[data-name="combo.flist"]').waitFor();
    await p.shot('me');

    // delete, confirmed in a dialog (cancel first)
    await pick('combo.flist');
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    expect(await names()).toContain('combo.flist');
    await page.getByRole('button', { name: 'Delete' }).click();
    await p.shot('me-delete-confirm');
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await page.locator('#me-list tr[data-name="combo.flist"]').waitFor({ state: 'detached' });
    expect(await names()).toEqual(expect.arrayContaining(['app.flist', 'fixture.flist', 'fixture-latest.flist']));

    // the merged flist had both trees; it is gone from the hub now
    const gone = await page.evaluate(async () => (await fetch('/api/ui/flist/alice/combo.flist')).status);
    expect(gone).toBe(404);
    p.expectClean(EXPECTED);
    await p.close();
  });

  it('shows the hub\'s message for a bad file', async () => {
    const p = await open('/upload', { token });
    const { page } = p;
    const txt = path.join(dir, 'notes.txt');
    fs.writeFileSync(txt, 'just text\n');
    await page.getByLabel('File', { exact: true }).setInputFiles(txt);
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('#upload-error').getByText('this file is not allowed').waitFor();
    expect(await text(p, '#upload-error')).toContain('notes.txt');
    // a broken archive with the right name
    const broken = path.join(dir, 'broken.tar.gz');
    fs.writeFileSync(broken, 'this is not gzip data at all'.repeat(40));
    await page.getByLabel('File', { exact: true }).setInputFiles(broken);
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('#upload-error').getByText('broken.tar.gz').waitFor();
    expect(await text(p, '#processing-pct')).toContain('failed');
    await p.shot('upload-bad-file');
    p.expectClean(EXPECTED);
    await p.close();
  });

  it('a read-only hub: the upload shows its message', async () => {
    const roToken = roHub.token('bob');
    const p = await open('/upload', { token: roToken, hubUrl: roHub.url });
    await p.page.getByLabel('File', { exact: true }).setInputFiles(tarball);
    await p.page.getByRole('button', { name: 'Upload' }).click();
    expect(await text(p, '#readonly-hint')).toContain('read-only');
    await p.page.locator('#upload-error').getByText('readonly mode').waitFor();
    expect(await text(p, '#upload-error')).toContain('read-only');
    await p.shot('upload-readonly');
    p.expectClean(EXPECTED);
    await p.close();
  });

  it('pages load only from the hub, under its CSP, with no errors; narrow and dark layouts; links and tags; missing things say so', async () => {
    const p = await open('/alice/tags/nope');
    expect(await text(p, '[role=alert]')).toContain('There is no tag');
    const csp = await p.page.evaluate(async () => (await fetch('/')).headers.get('content-security-policy'));
    expect(csp).toContain("script-src 'self'");
    await p.page.setViewportSize({ width: 390, height: 800 });
    await p.goto('/alice/fixture.flist.md');
    await p.page.locator('#tree li[data-path="/etc"]').waitFor();
    await p.shot('flist-narrow');
    await p.page.setViewportSize({ width: 1280, height: 800 });
    await p.page.emulateMedia({ colorScheme: 'dark' });
    await p.goto('/alice/fixture.flist.md');
    await p.page.locator('li[data-path="/links"] > .tree-row button').click();
    await p.page.locator('li[data-path="/links/relative"]').waitFor();
    await p.shot('flist-dark');
    await p.goto('/alice/fixture-latest.flist.md');
    expect(await text(p, '.page-head .lead')).toContain('links to alice/fixture.flist');
    await p.page.locator('#tree li[data-path="/etc"]').waitFor();
    await p.goto('/alice/tags/v1');
    expect(await p.page.locator('table.data tbody tr').count()).toBe(2);
    await p.shot('tag');
    await p.goto('/alice/nothing.flist.md');
    await p.page.getByRole('alert').first().waitFor();
    p.expectClean(EXPECTED);
    await p.close();
  });
});
