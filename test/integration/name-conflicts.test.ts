import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { startConfluenceStandIn } from '../confluence-stand-in/stand-in';
import type { ConfluenceStandIn, Site } from '../confluence-stand-in/types';
import { appAuthorization } from '../../functions/src/connect/jwt';
import { uploadAttachment, type ConfluenceTarget } from '../../functions/src/confluence/client';
import { relayFile, type RelayFileOptions } from '../../functions/src/uploads/relay-file';
import type { NameConflictPolicy } from '../../functions/src/core/config';

/**
 * The name-conflict policies, run by the relay's own upload module against the
 * Confluence stand-in over HTTP (one relay process per policy would test the
 * same code through more layers).
 */
const PAGE = '3001';
let standIn: ConfluenceStandIn;
let site: Site;
let app: ConfluenceTarget;

/** Confluence as the app, on a stand-in site. */
function appTargetOf(on: Site): ConfluenceTarget {
  return {
    baseUrl: on.baseUrl,
    authorize: (method, url) => appAuthorization({ method, url, tenantBaseUrl: on.baseUrl, appKey: 'confluence-upload-relay', sharedSecret: on.sharedSecret }),
  };
}

beforeAll(async () => {
  standIn = await startConfluenceStandIn({ appKey: 'confluence-upload-relay' });
  site = standIn.site();
  site.addPage(PAGE);
  app = appTargetOf(site);
});
afterAll(() => standIn.close());

function relay(name: string, bytes: Buffer, policy: NameConflictPolicy, extra: Partial<RelayFileOptions> = {}) {
  return relayFile({
    identity: { target: async () => app },
    appTarget: app,
    contentId: PAGE,
    file: { name, size: bytes.length, type: 'application/octet-stream' },
    minorEdit: true,
    policy,
    open: (consume) => consume(Readable.from([bytes])),
    upload: uploadAttachment,
    deadlineMs: Date.now() + 20_000,
    uploadTimeoutMs: 5_000,
    callTimeoutMs: 5_000,
    ...extra,
  });
}

const titles = () => site.attachments(PAGE).map((a) => a.title).sort();

it('rename: stores copies as "name (2).ext", "name (3).ext" and says so', async () => {
  await relay('report.pdf', randomBytes(10), 'rename');
  const second = await relay('report.pdf', randomBytes(11), 'rename');
  const third = await relay('report.pdf', randomBytes(12), 'rename');
  expect(second).toMatchObject({ name: 'report.pdf', title: 'report (2).pdf', outcome: 'renamed', fileSize: 11 });
  expect(third).toMatchObject({ title: 'report (3).pdf', outcome: 'renamed' });
  expect(titles()).toEqual(['report (2).pdf', 'report (3).pdf', 'report.pdf']);
});

it('fail: refuses an existing name with 409 name_conflict; the upload begun alongside the look-up is cut short and stores nothing', async () => {
  await relay('unique.txt', randomBytes(5), 'fail');
  const uploads = () => standIn.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/child/attachment'));
  const uploadsBefore = uploads().length;
  await expect(relay('unique.txt', randomBytes(6), 'fail')).rejects.toMatchObject({ status: 409, code: 'name_conflict' });
  // At most the one attempt, and Confluence never answered it: it never got its whole body.
  const begun = uploads().slice(uploadsBefore);
  expect(begun.length).toBeLessThanOrEqual(1);
  for (const request of begun) expect(request.status).toBe(0);
  expect(site.attachments(PAGE).filter((a) => a.title === 'unique.txt')).toEqual([expect.objectContaining({ fileSize: 5, version: 1 })]);
});

it("fail: a name taken between the look-up and the upload becomes 409 (Confluence's duplicate-name 400)", async () => {
  standIn.failNext({
    method: 'POST',
    pathIncludes: '/child/attachment',
    status: 400,
    body: { statusCode: 400, message: 'Cannot add a new attachment with same file name as an existing attachment: race.txt' },
  });
  await expect(relay('race.txt', randomBytes(5), 'fail')).rejects.toMatchObject({ status: 409, code: 'name_conflict' });
  expect(site.attachments(PAGE).filter((a) => a.title === 'race.txt')).toHaveLength(0);
});

it('rename: a name taken between the look-up and the upload moves on to the next free name', async () => {
  await relay('taken.txt', randomBytes(5), 'rename');
  standIn.failNext({
    method: 'POST',
    pathIncludes: '/child/attachment',
    status: 400,
    body: { statusCode: 400, message: 'Cannot add a new attachment with same file name as an existing attachment: taken (2).txt' },
  });
  site.attachments(PAGE); // nothing else changes
  const result = await relay('taken.txt', randomBytes(6), 'rename');
  expect(result.outcome).toBe('renamed');
  expect(site.attachments(PAGE).filter((a) => a.title.startsWith('taken'))).toHaveLength(2);
});

it('version: a second upload of a name adds version 2 of the same attachment', async () => {
  const first = await relay('versioned.txt', randomBytes(5), 'version');
  const second = await relay('versioned.txt', randomBytes(7), 'version');
  expect(first.outcome).toBe('created');
  expect(second).toMatchObject({ id: first.id, version: 2, outcome: 'versioned', fileSize: 7 });
  expect(site.attachments(PAGE).filter((a) => a.title === 'versioned.txt')).toHaveLength(1);
});

it('gives up with the Retry-After when the wait would not fit in the time left', async () => {
  standIn.failNext({ method: 'PUT', pathIncludes: '/child/attachment', status: 429, headers: { 'retry-after': '30' } });
  await expect(relay('late.txt', randomBytes(5), 'version', { deadlineMs: Date.now() + 5_000 })).rejects.toMatchObject({
    status: 429,
    headers: { 'retry-after': '30' },
  });
  expect(site.attachments(PAGE).filter((a) => a.title === 'late.txt')).toHaveLength(0);
});

describe('a "no" known early stops the bytes at once, not at the last byte', () => {
  // A slow link (2 MB/s) and a file that would take 4 s to send whole.
  let slow: ConfluenceStandIn;
  let slowSite: Site;
  let slowApp: ConfluenceTarget;
  const SIZE = 8_000_000;
  beforeAll(async () => {
    slow = await startConfluenceStandIn({ appKey: 'confluence-upload-relay', bytesPerSecond: 2_000_000 });
    slowSite = slow.site();
    slowSite.addPage(PAGE);
    slowApp = appTargetOf(slowSite);
  });
  afterAll(() => slow.close());

  const relaySlow = (name: string, bytes: Buffer, policy: NameConflictPolicy, extra: Partial<RelayFileOptions> = {}) =>
    relay(name, bytes, policy, { identity: { target: async () => slowApp }, appTarget: slowApp, uploadTimeoutMs: 20_000, ...extra });

  it('fail: an existing name, once the look-up answers', async () => {
    await relaySlow('taken.bin', Buffer.from('x'), 'fail');
    const started = Date.now();
    await expect(relaySlow('taken.bin', randomBytes(SIZE), 'fail')).rejects.toMatchObject({ status: 409, code: 'name_conflict' });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(slowSite.attachments(PAGE).filter((a) => a.title === 'taken.bin')).toEqual([expect.objectContaining({ fileSize: 1 })]);
  }, 20_000);

  it("the caller's refusal (a replay found in the ledger), once it is known", async () => {
    const refused = new Error('already uploaded');
    const started = Date.now();
    await expect(
      relaySlow('refused.bin', randomBytes(SIZE), 'version', { refusal: new Promise((resolve) => setTimeout(() => resolve(refused), 100)) }),
    ).rejects.toBe(refused);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(slowSite.attachments(PAGE).filter((a) => a.title === 'refused.bin')).toEqual([]);
  }, 20_000);
});
