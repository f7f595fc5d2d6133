import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Frame, FrameLocator, Page } from 'playwright-core';
import { launchChromium } from './chromium';
import { startSandboxProcess, type SandboxProcess } from './sandbox-process';

/**
 * The editor page in real Chromium against `npm start`'s sandbox (relay,
 * dynalite, s3rver, Confluence stand-in with the app installed), started as
 * a child process on free ports: every way of adding files, progress,
 * cancel, the error messages, keyboard use, the macro editor and both
 * themes, with the bytes checked at the stand-in and the console clean.
 */
const MiB = 1024 * 1024;
const DIRECT_MAX_BYTES = 1 * MiB;
const MAX_FILE_BYTES = 4 * MiB;
const ARTIFACTS = process.env.BROWSER_ARTIFACTS_DIR ?? path.join(os.tmpdir(), 'upload-relay-browser');

let sandbox: SandboxProcess;
let browser: Awaited<ReturnType<typeof launchChromium>>;

interface Stored {
  title: string;
  fileSize: number;
  mediaType: string;
  version: number;
  createdBy: string;
  downloadUrl: string;
}

interface SandboxPage {
  page: Page;
  /** The editor page inside the page's macro iframe. */
  editor: FrameLocator;
  frame: Frame;
  /** Console errors and warnings, uncaught exceptions. */
  problems: string[];
  loadMs: number;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  [sandbox, browser] = await Promise.all([
    startSandboxProcess({ DIRECT_MAX_BYTES: String(DIRECT_MAX_BYTES), MAX_FILE_BYTES: String(MAX_FILE_BYTES), COMPLETE_WAIT_MS: '500' }),
    launchChromium(),
  ]);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await sandbox?.stop();
});

async function openSandbox(query = ''): Promise<SandboxPage> {
  const page = await browser.context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  // File choosers are intercepted from the start (Playwright otherwise turns interception on when a test starts waiting for one).
  page.on('filechooser', () => undefined);
  const started = Date.now();
  await page.goto(`${sandbox.url}${query}`);
  const editor = page.frameLocator('#macro-frame');
  await editor.locator('body[data-state="ready"]').waitFor();
  const loadMs = Date.now() - started;
  const frame = await (await page.locator('#macro-frame').elementHandle())!.contentFrame();
  return { page, editor, frame: frame!, problems, loadMs };
}

/** Runs a test on a fresh sandbox page; a failure leaves a screenshot in the artifacts folder. */
function browserTest(name: string, body: (sandboxPage: SandboxPage) => Promise<void>, query = '') {
  it(name, async () => {
    const sandboxPage = await openSandbox(query);
    try {
      await body(sandboxPage);
    } catch (error) {
      const file = path.join(ARTIFACTS, `failure-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`);
      await sandboxPage.page.screenshot({ path: file, fullPage: true }).catch(() => undefined);
      throw error;
    } finally {
      await sandboxPage.page.close();
    }
  });
}

async function storedAttachments(): Promise<Stored[]> {
  const response = await fetch(`${sandbox.url}api/attachments`);
  return ((await response.json()) as { attachments: Stored[] }).attachments;
}

/** The bytes the stand-in Confluence holds for an attachment (over HTTP, as Confluence would serve them). */
async function storedBytes(title: string): Promise<Buffer> {
  const attachment = (await storedAttachments()).find((a) => a.title === title);
  if (!attachment) throw new Error(`${title} is not attached at the stand-in`);
  return Buffer.from(await (await fetch(attachment.downloadUrl)).arrayBuffer());
}

async function pickFiles(sandboxPage: SandboxPage, files: Array<{ name: string; mimeType: string; buffer: Buffer }>) {
  const [chooser] = await Promise.all([sandboxPage.page.waitForEvent('filechooser'), sandboxPage.editor.locator('#pick').click()]);
  await chooser.setFiles(files);
}

const row = (editor: FrameLocator, name: string) => editor.locator('li.file').filter({ has: editor.locator('.file-name', { hasText: name }) });

async function waitDone(editor: FrameLocator, ...names: string[]) {
  for (const name of names) await row(editor, name).and(editor.locator('[data-state="done"]')).waitFor({ timeout: 30_000 });
}

/** Records every status text each upload row shows, to see progress go by. */
async function recordStatuses(frame: Frame): Promise<void> {
  await frame.evaluate(() => {
    const seen: Record<string, string[]> = {};
    (window as unknown as { seenStatuses: typeof seen }).seenStatuses = seen;
    new MutationObserver(() => {
      for (const item of Array.from(document.querySelectorAll('li.file'))) {
        const name = item.querySelector('.file-name')?.textContent ?? '';
        const status = item.querySelector('.file-status')?.textContent ?? '';
        const list = (seen[name] ??= []);
        if (!list.includes(status)) list.push(status);
      }
    }).observe(document.getElementById('files')!, { subtree: true, childList: true, characterData: true });
  });
}

const seenStatuses = (frame: Frame) => frame.evaluate(() => (window as unknown as { seenStatuses: Record<string, string[]> }).seenStatuses);

/** Polls `read` until `accept` holds (or fails with the last value after `timeoutMs`). */
async function eventually<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`still ${JSON.stringify(value)} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Expects nothing in the console but the given lines (e.g. the browser's note about an expected 403). */
function expectCleanConsole(problems: string[], ...allowed: RegExp[]) {
  expect(problems.filter((line) => !allowed.some((pattern) => pattern.test(line)))).toEqual([]);
}

describe('editor page in the sandbox (Chromium)', () => {
  browserTest('file picker: a direct and a staged file, progress to 100%, listed and byte-identical at the stand-in', async (sp) => {
    const small = { name: 'picker-notes.txt', mimeType: 'text/plain', buffer: randomBytes(200_000) };
    const large = { name: 'picker-archive.zip', mimeType: 'application/zip', buffer: randomBytes(2 * MiB) };
    const requests: string[] = [];
    sp.page.on('request', (request) => requests.push(`${request.method()} ${request.url()}`));
    await recordStatuses(sp.frame);

    await pickFiles(sp, [small, large]);
    await waitDone(sp.editor, small.name, large.name);

    const statuses = await seenStatuses(sp.frame);
    for (const file of [small, large]) {
      expect(statuses[file.name]).toEqual(expect.arrayContaining(['100%', 'Uploaded']));
      await expect(row(sp.editor, file.name).locator('progress').evaluate((bar) => (bar as HTMLProgressElement).value)).resolves.toBe(100);
      expect(sha256(await storedBytes(file.name))).toBe(sha256(file.buffer));
    }
    // The small file went through the relay, the large one through the staging bucket.
    expect(requests).toContain(`POST ${sandbox.relayUrl}/uploads`);
    expect(requests).toContain(`POST ${sandbox.relayUrl}/uploads/complete`);
    expect(requests.some((r) => /^POST http:\/\/127\.0\.0\.1:\d+\/upload-relay-staging/.test(r))).toBe(true);
    // The result links to the attachment, and the page's attachment list shows both.
    await expect(row(sp.editor, small.name).locator('a.file-name').getAttribute('href')).resolves.toMatch(/\/download\/attachments\/65538\/picker-notes\.txt/);
    await sp.page.locator('#attachment-rows tr[data-title="picker-archive.zip"]').waitFor();
    await sp.page.locator('#attachment-rows tr[data-title="picker-notes.txt"]').waitFor();
    expect((await storedAttachments()).find((a) => a.title === large.name)).toMatchObject({ fileSize: 2 * MiB, mediaType: 'application/zip', createdBy: 'Alice' });

    const readyMs = await sp.frame.evaluate(() => performance.getEntriesByName('editor-ready')[0]?.startTime);
    writeFileSync(path.join(ARTIFACTS, 'load-time.json'), JSON.stringify({ sandboxPageToEditorReadyMs: sp.loadMs, editorNavigationToReadyMs: readyMs }));
    expectCleanConsole(sp.problems);
  });

  browserTest('drag and drop: three files at once', async (sp) => {
    const files = [1, 2, 3].map((i) => ({ name: `dropped-${i}.bin`, type: 'application/octet-stream', bytes: randomBytes(50_000 * i) }));
    const dataTransfer = await sp.frame.evaluateHandle(
      (list) => {
        const transfer = new DataTransfer();
        for (const file of list) transfer.items.add(new File([Uint8Array.from(atob(file.base64), (c) => c.charCodeAt(0))], file.name, { type: file.type }));
        return transfer;
      },
      files.map((f) => ({ name: f.name, type: f.type, base64: f.bytes.toString('base64') })),
    );
    const zone = sp.editor.locator('#drop-zone');
    await zone.dispatchEvent('dragenter', { dataTransfer });
    await zone.dispatchEvent('dragover', { dataTransfer });
    await expect(zone.getAttribute('class')).resolves.toContain('dragging');
    await zone.dispatchEvent('drop', { dataTransfer });

    await waitDone(sp.editor, ...files.map((f) => f.name));
    for (const file of files) expect(sha256(await storedBytes(file.name))).toBe(sha256(file.bytes));
    await expect(zone.getAttribute('class')).resolves.not.toContain('dragging');
    expectCleanConsole(sp.problems);
  });

  browserTest('paste: an image from the clipboard gets its own name and is attached', async (sp) => {
    const png = randomBytes(30_000);
    await sp.frame.evaluate((base64) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))], 'image.png', { type: 'image/png' }));
      document.body.dispatchEvent(new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true, cancelable: true }));
    }, png.toString('base64'));

    const pasted = sp.editor.locator('li.file[data-state="done"] .file-name', { hasText: /^pasted-\d{8}-\d{6}\.png$/ });
    await pasted.waitFor({ timeout: 30_000 });
    const name = (await pasted.textContent())!;
    expect(sha256(await storedBytes(name))).toBe(sha256(png));
    expect((await storedAttachments()).find((a) => a.title === name)?.mediaType).toBe('image/png');
    expectCleanConsole(sp.problems);
  });

  browserTest('cancel stops an upload mid-way and nothing is attached; retry then uploads it', async (sp) => {
    const file = { name: 'cancelled.bin', mimeType: 'application/octet-stream', buffer: randomBytes(900_000) };
    // A slow uplink (200 KiB/s) so the upload is still running when Cancel is pressed.
    const network = await browser.context.newCDPSession(sp.frame);
    await network.send('Network.enable');
    await network.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 200 * 1024 });

    await pickFiles(sp, [file]);
    const status = row(sp.editor, file.name).locator('.file-status');
    await eventually(async () => Number((await status.textContent())?.replace('%', '') || 0), (percent) => percent >= 10);
    await sp.editor.getByRole('button', { name: `Cancel upload of ${file.name}` }).click();

    await row(sp.editor, file.name).and(sp.editor.locator('[data-state="cancelled"]')).waitFor();
    // Keyboard focus moved to the row's Retry button.
    await expect(sp.frame.evaluate(() => document.activeElement?.getAttribute('aria-label'))).resolves.toBe(`Retry upload of ${file.name}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect((await storedAttachments()).map((a) => a.title)).not.toContain(file.name);

    await network.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await sp.editor.getByRole('button', { name: `Retry upload of ${file.name}` }).click();
    await waitDone(sp.editor, file.name);
    expect(sha256(await storedBytes(file.name))).toBe(sha256(file.buffer));
    expectCleanConsole(sp.problems);
  });

  browserTest(
    'a viewer without edit permission sees the permission message and nothing is attached',
    async (sp) => {
      await pickFiles(sp, [{ name: 'viewer.txt', mimeType: 'text/plain', buffer: Buffer.from('may not') }]);
      const failed = row(sp.editor, 'viewer.txt');
      await failed.and(sp.editor.locator('[data-state="error"]')).waitFor();
      await expect(failed.locator('.file-message').textContent()).resolves.toBe("You don't have permission to add files to this page.");
      await eventually(() => sp.editor.locator('#live').textContent(), (text) => Boolean(text?.includes("viewer.txt failed: You don't have permission")));
      expect((await storedAttachments()).map((a) => a.title)).not.toContain('viewer.txt');
      expectCleanConsole(sp.problems, /Failed to load resource: the server responded with a status of 403/);
    },
    '?user=victor',
  );

  browserTest('a file over MAX_FILE_BYTES gets the size message; the other file of the batch is still uploaded', async (sp) => {
    const fine = { name: 'limit-ok.txt', mimeType: 'text/plain', buffer: randomBytes(1000) };
    const huge = { name: 'limit-huge.bin', mimeType: 'application/octet-stream', buffer: randomBytes(MAX_FILE_BYTES + 1) };
    await pickFiles(sp, [fine, huge]);
    await waitDone(sp.editor, fine.name);
    const failed = row(sp.editor, huge.name);
    await failed.and(sp.editor.locator('[data-state="error"]')).waitFor();
    await expect(failed.locator('.file-message').textContent()).resolves.toBe('This file is larger than the upload limit.');
    await expect(failed.getByRole('button', { name: `Retry upload of ${huge.name}` }).isVisible()).resolves.toBe(true);
    expect((await storedAttachments()).map((a) => a.title)).not.toContain(huge.name);
    expectCleanConsole(sp.problems, /Failed to load resource: the server responded with a status of 413/);
  });

  browserTest('keyboard only: Tab reaches the picker first in the frame, Enter opens it, the upload is announced', async (sp) => {
    let focusedId: string | null | undefined;
    for (let presses = 0; presses < 10 && focusedId !== 'pick'; presses += 1) {
      await sp.page.keyboard.press('Tab');
      focusedId = await sp.frame.evaluate(() => (document.hasFocus() ? document.activeElement?.id : null));
    }
    expect(focusedId).toBe('pick');
    const [chooser] = await Promise.all([sp.page.waitForEvent('filechooser'), sp.page.keyboard.press('Enter')]);
    const file = { name: 'keyboard.txt', mimeType: 'text/plain', buffer: randomBytes(5000) };
    await chooser.setFiles([file]);
    await waitDone(sp.editor, file.name);
    await eventually(() => sp.editor.locator('#live').textContent(), (text) => Boolean(text?.includes('keyboard.txt uploaded')));
    expect(sha256(await storedBytes(file.name))).toBe(sha256(file.buffer));
    expectCleanConsole(sp.problems);
  });

  browserTest('macro editor: uploads in the dialog, Insert saves the macro and closes the editor', async (sp) => {
    await sp.page.locator('#open-macro-editor').click();
    const dialogEditor = sp.page.frameLocator('#macro-editor-frame');
    await dialogEditor.locator('body[data-state="ready"]').waitFor();
    const [chooser] = await Promise.all([sp.page.waitForEvent('filechooser'), dialogEditor.locator('#pick').click()]);
    await chooser.setFiles([{ name: 'from-dialog.txt', mimeType: 'text/plain', buffer: Buffer.from('macro editor') }]);
    await waitDone(dialogEditor, 'from-dialog.txt');
    await dialogEditor.getByRole('button', { name: 'Insert' }).click();
    await eventually(() => sp.page.locator('#macro-dialog').evaluate((d) => (d as HTMLDialogElement).open), (open) => !open);
    await expect(sp.page.locator('#host-status').textContent()).resolves.toContain('macro was saved');
    expectCleanConsole(sp.problems);
  });

  browserTest('light and dark themes (screenshots)', async (sp) => {
    // No animation mid-screenshot (the progress bar's transition honours reduced motion).
    await sp.page.emulateMedia({ reducedMotion: 'reduce' });
    await pickFiles(sp, [
      { name: 'theme-sample.pdf', mimeType: 'application/pdf', buffer: randomBytes(120_000) },
      { name: 'theme-too-large.mov', mimeType: 'video/quicktime', buffer: randomBytes(MAX_FILE_BYTES + 1) },
    ]);
    await waitDone(sp.editor, 'theme-sample.pdf');
    await row(sp.editor, 'theme-too-large.mov').and(sp.editor.locator('[data-state="error"]')).waitFor();
    const background = () => sp.frame.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await expect(background()).resolves.toBe('rgb(255, 255, 255)');
    await sp.page.screenshot({ path: path.join(ARTIFACTS, 'editor-light.png'), fullPage: true });

    // The OS asks for dark: the host resolves it and pushes Atlassian's data-color-mode into the frame.
    await sp.page.emulateMedia({ colorScheme: 'dark' });
    await eventually(() => sp.frame.evaluate(() => document.documentElement.dataset.colorMode), (mode) => mode === 'dark');
    await eventually(background, (color) => color === 'rgb(29, 33, 37)');
    await sp.page.screenshot({ path: path.join(ARTIFACTS, 'editor-dark.png'), fullPage: true });
    expectCleanConsole(sp.problems, /Failed to load resource: the server responded with a status of 413/);
  });
});
