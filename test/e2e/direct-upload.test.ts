import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeleteItemCommand, DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { startConfluenceStandIn } from '../confluence-stand-in/stand-in';
import type { ConfluenceStandIn, Site } from '../confluence-stand-in/types';
import { startDynalite } from '../../functions/src/local/dynamodb-local';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { RelayClient, declare, type UploadPart } from '../helpers/relay-client';
import { rsaKeyPair, signHs256 } from '../helpers/jwt';

/**
 * The contract's Descriptor, Lifecycle, Tickets and Direct-upload sections,
 * driven over HTTP against `npm run relay` (the Lambda bundles behind the local
 * API Gateway), with dynalite and the Confluence stand-in as real servers.
 */
const MARKER = `FILE-CONTENT-MARKER-${randomUUID()}`;
const PAGE = '1001';
const RESTRICTED_PAGE = '1002';
const EDITOR = 'account-editor';
const VIEWER = 'account-viewer';

let standIn: ConfluenceStandIn;
let site: Site;
let relay: RelayProcess;
let client: RelayClient;
let dynamo: Awaited<ReturnType<typeof startDynalite>>;
const startedAt = Date.now();

/** Distinctive, incompressible file content that carries a marker for the data-minimisation checks. */
function fileBytes(size: number): Buffer {
  const bytes = randomBytes(size);
  const marker = Buffer.from(MARKER);
  for (let offset = 0; offset + marker.length <= size; offset += 64 * 1024) marker.copy(bytes, offset);
  return bytes;
}
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const contextToken = (accountId = EDITOR) => site.contextToken({ accountId });
const attachmentCount = () => standIn.site().allAttachments().length + standIn.site('other').allAttachments().length;

async function expectError(response: Response, status: number, code?: string): Promise<Record<string, any>> {
  const text = await response.text();
  expect({ status: response.status, text }).toEqual({ status, text: expect.any(String) });
  const body = JSON.parse(text);
  expect(body.error).toEqual({ code: code ?? expect.any(String), message: expect.any(String) });
  return body;
}

beforeAll(async () => {
  standIn = await startConfluenceStandIn({ appKey: 'confluence-upload-relay' });
  site = standIn.site();
  site.addPage(PAGE);
  site.addPage(RESTRICTED_PAGE, { editors: [EDITOR] });
  dynamo = await startDynalite();
  relay = await startRelayProcess({
    DYNAMODB_ENDPOINT: dynamo.endpoint,
    TABLE_NAME: 'relay-e2e',
    CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    UPSTREAM_TIMEOUT_MS: '10000',
    UPLOAD_AS: 'app',
  });
  client = new RelayClient(relay.url);
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  await dynamo?.close();
  await standIn?.close();
});

describe('descriptor', () => {
  it('serves a Connect descriptor whose baseUrl is the relay', async () => {
    const response = await fetch(`${relay.url}/atlassian-connect.json`);
    expect(response.status).toBe(200);
    const descriptor = (await response.json()) as Record<string, any>;
    expect(descriptor).toMatchObject({
      key: 'confluence-upload-relay',
      baseUrl: relay.url,
      authentication: { type: 'jwt' },
      lifecycle: { installed: '/lifecycle/installed', uninstalled: '/lifecycle/uninstalled' },
      apiMigrations: { 'signed-install': true, 'context-qsh': true },
    });
    expect(descriptor.scopes).toEqual(expect.arrayContaining(['READ', 'WRITE', 'ACT_AS_USER']));
    const editorUrl: string = descriptor.modules.dynamicContentMacros[0].editor.url;
    expect(editorUrl.startsWith('/editor')).toBe(true);
    expect((await fetch(`${relay.url}${editorUrl.replace('{page.id}', PAGE)}`)).status).toBe(200);
  });

  it('answers /health', async () => {
    const response = await fetch(`${relay.url}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });
});

describe('lifecycle', () => {
  const otherKey = rsaKeyPair();

  it.each<[string, () => { body: string; authorization: string }]>([
    ['forged signature', () => site.installRequest({ relayBaseUrl: relay.url, privateKeyPem: otherKey.privateKeyPem })],
    ['unknown kid', () => site.installRequest({ relayBaseUrl: relay.url, kid: 'no-such-key' })],
    ['wrong aud', () => site.installRequest({ relayBaseUrl: relay.url, claims: { aud: 'https://someone-else.example.com' } })],
    ['expired', () => site.installRequest({ relayBaseUrl: relay.url, claims: { exp: Math.floor(Date.now() / 1000) - 600 } })],
    ['qsh of another route', () => site.installRequest({ relayBaseUrl: relay.url, path: '/lifecycle/uninstalled' })],
    [
      'symmetric (shared secret) signature',
      () => {
        const good = site.installRequest({ relayBaseUrl: relay.url });
        const claims = JSON.parse(Buffer.from(good.token.split('.')[1], 'base64url').toString());
        return { body: good.body, authorization: `JWT ${signHs256(claims, site.sharedSecret)}` };
      },
    ],
  ])('refuses an install with a %s (401, nothing stored)', async (_name, build) => {
    await expectError(await client.install(build()), 401, 'unauthorized');
    // Nothing was stored: the tenant's context tokens are still unknown.
    await expectError(await client.requestTicket(`JWT ${contextToken()}`, { contentId: PAGE, files: [{ name: 'a', size: 1 }] }), 401);
  });

  it('refuses a tenant outside ALLOWED_TENANT_HOSTS with 403 tenant_not_allowed', async () => {
    const request = site.installRequest({ relayBaseUrl: relay.url, payload: { baseUrl: 'http://evil.example.com/wiki' } });
    await expectError(await client.install(request), 403, 'tenant_not_allowed');
  });

  it('refuses an https-less tenant when http is not allowed... via host check on 169.254.169.254', async () => {
    const request = site.installRequest({ relayBaseUrl: relay.url, payload: { baseUrl: 'http://169.254.169.254/latest' } });
    await expectError(await client.install(request), 403, 'tenant_not_allowed');
  });

  it('installs a correctly signed tenant (204)', async () => {
    const response = await client.install(site.installRequest({ relayBaseUrl: relay.url }));
    expect(response.status).toBe(204);
  });
});

describe('tickets', () => {
  const file = { name: 'report.pdf', size: 1234, type: 'application/pdf' };

  it('issues a ticket bound to the declared files, with an expiry', async () => {
    const response = await client.requestTicket(`JWT ${contextToken()}`, { contentId: PAGE, files: [file], comment: 'q3', minorEdit: true });
    expect(response.status).toBe(201);
    const body = (await response.json()) as Record<string, any>;
    expect(body.ticket).toEqual(expect.any(String));
    const expiresIn = Date.parse(body.expiresAt) - Date.now();
    expect(expiresIn).toBeGreaterThan(290_000);
    expect(expiresIn).toBeLessThanOrEqual(300_000);
    expect(body.uploads).toEqual([{ name: 'report.pdf', mode: 'direct', url: `${relay.url}/uploads` }]);
  });

  it.each<[string, () => string | undefined]>([
    ['no token', () => undefined],
    ['an expired token', () => `JWT ${site.contextToken({ accountId: EDITOR, claims: { exp: Math.floor(Date.now() / 1000) - 600 } })}`],
    ['a token signed with another secret', () => `JWT ${signHs256({ iss: site.clientKey, sub: EDITOR, qsh: 'context-qsh', exp: Math.floor(Date.now() / 1000) + 60 }, 'x'.repeat(40))}`],
    ['an unknown issuer', () => `JWT ${site.contextToken({ accountId: EDITOR, claims: { iss: 'unknown-client' } })}`],
    ['a wrong qsh', () => `JWT ${site.contextToken({ accountId: EDITOR, qsh: 'a'.repeat(64) })}`],
    ['the Bearer scheme', () => `Bearer ${contextToken()}`],
  ])('refuses %s with 401', async (_name, authorization) => {
    await expectError(await client.requestTicket(authorization(), { contentId: PAGE, files: [file] }), 401, 'unauthorized');
  });

  it.each<[string, unknown, number]>([
    ['an empty file list', { contentId: PAGE, files: [] }, 400],
    ['more files than MAX_FILES_PER_TICKET', { contentId: PAGE, files: Array.from({ length: 21 }, (_, i) => ({ name: `f${i}`, size: 1 })) }, 400],
    ['a body that is not JSON', '{"contentId": ', 400],
    ['a missing contentId', { files: [file] }, 400],
    ['a file over MAX_FILE_BYTES', { contentId: PAGE, files: [{ name: 'huge.iso', size: 104857601 }] }, 413],
  ])('refuses %s', async (_name, body, status) => {
    await expectError(await client.requestTicket(`JWT ${contextToken()}`, body), status);
  });

  it('refuses a user who may not edit the page with 403 forbidden', async () => {
    await expectError(await client.requestTicket(`JWT ${contextToken(VIEWER)}`, { contentId: RESTRICTED_PAGE, files: [file] }), 403, 'forbidden');
  });

  it('answers 404 for a page that does not exist', async () => {
    await expectError(await client.requestTicket(`JWT ${contextToken()}`, { contentId: '999999', files: [file] }), 404, 'content_not_found');
  });
});

describe('direct uploads', () => {
  async function uploadAndCheck(parts: UploadPart[], contentId = PAGE) {
    const ticket = await client.ticket(contextToken(), contentId, declare(parts));
    const response = await client.upload(ticket, parts);
    const body = (await response.json()) as Record<string, any>;
    expect({ status: response.status, body }).toMatchObject({ status: 200 });
    expect(body.attachments).toHaveLength(parts.length);
    for (const [i, part] of parts.entries()) {
      const result = body.attachments[i];
      expect(result).toMatchObject({ name: part.name, title: part.name, fileSize: part.bytes.length, version: 1, id: expect.any(String) });
      expect(result.downloadUrl.startsWith(site.baseUrl)).toBe(true);
      const stored = site.attachments(contentId).find((a) => a.id === result.id);
      expect(stored?.sha256).toBe(sha256(part.bytes));
      // UPLOAD_AS=app: the app is the author; the user's right to edit was checked at ticket time.
      expect(stored?.createdBy).toBe('app');
    }
    return { ticket, body };
  }

  it.each([
    ['1 KiB', 1024],
    ['1 MiB', 1024 * 1024],
    ['3.5 MiB', 3.5 * 1024 * 1024],
  ])('relays a %s file byte-identical', async (label, size) => {
    await uploadAndCheck([{ name: `file-${label}.bin`, bytes: fileBytes(size) }]);
  });

  it('relays three files in one request', async () => {
    await uploadAndCheck([
      { name: 'one.png', bytes: fileBytes(20_000), type: 'image/png' },
      { name: 'two.txt', bytes: fileBytes(5_000), type: 'text/plain' },
      { name: 'three.bin', bytes: fileBytes(300_000) },
    ]);
  });

  it('keeps unicode file names exactly', async () => {
    const { body } = await uploadAndCheck([
      { name: 'Zürich 東京 🚀.txt', bytes: fileBytes(100) },
      { name: 'مرحبا ‮gnp.exe', bytes: fileBytes(100), type: 'application/pdf' },
      { name: "l'été (1) & co; x=y.txt", bytes: fileBytes(100) },
    ]);
    expect(body.attachments.map((a: { title: string }) => a.title)).toEqual(['Zürich 東京 🚀.txt', 'مرحبا ‮gnp.exe', "l'été (1) & co; x=y.txt"]);
  });

  it('accepts a name with double quotes as browsers encode it, and cannot be tricked into a second part', async () => {
    const part = { name: 'say "hi"; name="evil".txt', bytes: fileBytes(100) };
    const ticket = await client.ticket(contextToken(), PAGE, declare([part]));
    const response = await client.upload(ticket, [part]);
    expect(response.status).toBe(200);
    const stored = site.attachments(PAGE).filter((a) => a.title.includes('say'));
    expect(stored).toHaveLength(1);
    expect(stored[0].sha256).toBe(sha256(part.bytes));
  });

  it('passes the comment and minorEdit to Confluence', async () => {
    const part = { name: 'commented.txt', bytes: fileBytes(10) };
    const ticket = await client.ticket(contextToken(), PAGE, declare([part]), { comment: 'Grüße aus 東京', minorEdit: false });
    expect((await client.upload(ticket, [part])).status).toBe(200);
    expect(site.attachments(PAGE).find((a) => a.title === 'commented.txt')).toMatchObject({ comment: 'Grüße aus 東京', minorEdit: false });
  });

  it('answers a replay with the first result and creates nothing new', async () => {
    const part = { name: 'replayed.txt', bytes: fileBytes(2048) };
    const { ticket, body } = await uploadAndCheck([part]);
    const before = attachmentCount();
    const again = await client.upload(ticket, [part]);
    expect(again.status).toBe(200);
    expect(((await again.json()) as Record<string, any>).attachments[0].id).toBe(body.attachments[0].id);
    expect(attachmentCount()).toBe(before);
    expect(site.attachments(PAGE).find((a) => a.title === 'replayed.txt')?.version).toBe(1);
  });

  describe('refused requests create no attachment', () => {
    let before: number;
    beforeEach(() => {
      before = attachmentCount();
    });
    afterEach(() => {
      expect(attachmentCount()).toBe(before);
    });

    it('a file not declared on the ticket: 400', async () => {
      const ticket = await client.ticket(contextToken(), PAGE, [{ name: 'declared.txt', size: 10 }]);
      await expectError(await client.upload(ticket, [{ name: 'other.txt', bytes: fileBytes(10) }]), 400, 'undeclared_file');
    });

    it('a declared file next to an undeclared one: 400 for the whole request', async () => {
      const good = { name: 'good.txt', bytes: fileBytes(10) };
      const ticket = await client.ticket(contextToken(), PAGE, declare([good]));
      await expectError(await client.upload(ticket, [good, { name: 'sneaky.txt', bytes: fileBytes(10) }]), 400, 'undeclared_file');
    });

    it('a file larger than declared: 413', async () => {
      const ticket = await client.ticket(contextToken(), PAGE, [{ name: 'grown.bin', size: 1000 }]);
      await expectError(await client.upload(ticket, [{ name: 'grown.bin', bytes: fileBytes(1001) }]), 413);
    });

    it('a file smaller than declared: 400', async () => {
      const ticket = await client.ticket(contextToken(), PAGE, [{ name: 'shrunk.bin', size: 1000 }]);
      await expectError(await client.upload(ticket, [{ name: 'shrunk.bin', bytes: fileBytes(999) }]), 400, 'size_mismatch');
    });

    it('a type other than declared: 400', async () => {
      const ticket = await client.ticket(contextToken(), PAGE, [{ name: 'pic.png', size: 10, type: 'image/png' }]);
      await expectError(await client.upload(ticket, [{ name: 'pic.png', bytes: fileBytes(10), type: 'text/html' }]), 400, 'type_mismatch');
    });

    it.each<[string, Buffer | string, string | undefined]>([
      ['garbage', 'this is not multipart', 'multipart/form-data; boundary=abc'],
      ['no boundary', '--abc\r\n', 'multipart/form-data'],
      ['not multipart at all', '{"a":1}', 'application/json'],
      ['no content type', 'abc', undefined],
      [
        'a truncated body',
        '--abc\r\nContent-Disposition: form-data; name="file"; filename="t.bin"\r\nContent-Type: application/octet-stream\r\n\r\n0123456789',
        'multipart/form-data; boundary=abc',
      ],
      ['an empty body', '', 'multipart/form-data; boundary=abc'],
    ])('malformed multipart (%s): 400', async (_name, payload, contentType) => {
      const ticket = await client.ticket(contextToken(), PAGE, [{ name: 't.bin', size: 10 }]);
      const body = await expectError(await client.uploadRaw(ticket, payload, contentType), 400);
      expect(['bad_multipart', 'no_files']).toContain(body.error.code);
    });

    it.each<[string, () => Promise<string | undefined>]>([
      ['no ticket', async () => undefined],
      ['a forged ticket', async () => `rt1.${Buffer.from(site.clientKey).toString('base64url')}.${randomBytes(32).toString('base64url')}`],
      ['a garbage ticket', async () => 'hello'],
      ['a context JWT instead of a ticket', async () => contextToken()],
    ])('%s: 401', async (_name, ticket) => {
      await expectError(await client.upload(await ticket(), [{ name: 'x.txt', bytes: fileBytes(10) }]), 401, 'unauthorized');
    });

    it('a user without edit rights never gets a ticket for the page', async () => {
      await expectError(await client.requestTicket(`JWT ${contextToken(VIEWER)}`, { contentId: RESTRICTED_PAGE, files: [{ name: 'x', size: 1 }] }), 403);
    });
  });

  describe('one pass: a lone file streams while the rest of the body is checked', () => {
    const PART_HEAD = (boundary: string, name: string) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`;
    const uploadRequests = () => standIn.requests.filter((r) => r.path.endsWith(`/content/${PAGE}/child/attachment`) && r.method !== 'GET');

    it('sends a lone file to Confluence once, in one request', async () => {
      const part = { name: 'lone.bin', bytes: fileBytes(600_000) };
      const sent = uploadRequests().length;
      await uploadAndCheck([part]);
      expect(uploadRequests().slice(sent).map((r) => r.status)).toEqual([200]);
    });

    it('text parts after the file: the begun request is cut short, and the file goes again with the comment, once', async () => {
      const bytes = fileBytes(300_000);
      const boundary = `b${randomUUID()}`;
      const body = Buffer.concat([
        Buffer.from(PART_HEAD(boundary, 'late-comment.bin')),
        bytes,
        Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="comment"\r\n\r\nsent after the file\r\n--${boundary}--\r\n`),
      ]);
      const ticket = await client.ticket(contextToken(), PAGE, [{ name: 'late-comment.bin', size: bytes.length }]);
      const sent = uploadRequests().length;
      const response = await client.uploadRaw(ticket, body, `multipart/form-data; boundary=${boundary}`);
      expect(response.status).toBe(200);
      const stored = site.attachments(PAGE).filter((a) => a.title === 'late-comment.bin');
      expect(stored).toEqual([expect.objectContaining({ comment: 'sent after the file', version: 1, sha256: sha256(bytes) })]);
      // Answered exactly once; the request begun before the comment was seen (if it got through at all) never was.
      const statuses = uploadRequests().slice(sent).map((r) => r.status);
      expect(statuses.filter((status) => status === 200)).toHaveLength(1);
      expect(statuses.filter((status) => status !== 200)).toEqual(statuses.length === 2 ? [0] : []);
    });

    it('an unexpected part after a good file part: 400 for the whole request, nothing stored', async () => {
      const before = attachmentCount();
      const bytes = fileBytes(200_000);
      const boundary = `b${randomUUID()}`;
      const body = Buffer.concat([
        Buffer.from(PART_HEAD(boundary, 'then-junk.bin')),
        bytes,
        Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="junk"\r\n\r\n1\r\n--${boundary}--\r\n`),
      ]);
      const ticket = await client.ticket(contextToken(), PAGE, [{ name: 'then-junk.bin', size: bytes.length }]);
      const sent = uploadRequests().length;
      await expectError(await client.uploadRaw(ticket, body, `multipart/form-data; boundary=${boundary}`), 400, 'unexpected_part');
      expect(attachmentCount()).toBe(before);
      expect(uploadRequests().slice(sent).every((r) => r.status === 0)).toBe(true);
    });

    it('a broken body after a good file part: 400, and the request begun for the file stores nothing', async () => {
      const before = attachmentCount();
      const bytes = fileBytes(300_000);
      const boundary = `b${randomUUID()}`;
      // The file part is whole; what follows it is a part cut off without its close delimiter.
      const body = Buffer.concat([
        Buffer.from(PART_HEAD(boundary, 'broken-tail.bin')),
        bytes,
        Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="comment"\r\n\r\nunfinished`),
      ]);
      const ticket = await client.ticket(contextToken(), PAGE, [{ name: 'broken-tail.bin', size: bytes.length }]);
      const sent = uploadRequests().length;
      await expectError(await client.uploadRaw(ticket, body, `multipart/form-data; boundary=${boundary}`), 400, 'bad_multipart');
      expect(attachmentCount()).toBe(before);
      expect(uploadRequests().slice(sent).every((r) => r.status === 0)).toBe(true);
      // Nothing was stored, so the file may be sent again on the same ticket.
      expect((await client.upload(ticket, [{ name: 'broken-tail.bin', bytes }])).status).toBe(200);
      expect(site.attachments(PAGE).filter((a) => a.title === 'broken-tail.bin')).toEqual([expect.objectContaining({ sha256: sha256(bytes) })]);
    });
  });

  it('a request body too large for one Lambda invocation: 413 from the gateway', async () => {
    const part = { name: 'too-big.bin', bytes: fileBytes(4_800_000) };
    const ticket = await client.ticket(contextToken(), PAGE, [{ name: 'small.bin', size: 10 }]);
    const response = await client.upload(ticket, [part]);
    expect(response.status).toBe(413);
  });
});

describe('signed tickets: an instance that knows the tenant starts the upload while the store confirms the ticket', () => {
  const uploadRequestsSince = (sent: number) => standIn.requests.slice(sent).filter((r) => r.path.endsWith('/child/attachment') && r.method !== 'GET');
  /** The access-log line of the request answered with `response` (its API Gateway request id). */
  async function accessLog(response: Response): Promise<Record<string, any> | undefined> {
    const requestId = response.headers.get('apigw-requestid');
    for (let i = 0; i < 50; i += 1) {
      const line = relay.logLines().find((l) => l.message === 'request' && l.correlation_id === requestId);
      if (line) return line;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return undefined;
  }
  /** An upload through the relay, so that its `uploads` function has read this tenant's record. */
  async function warmUp(): Promise<void> {
    const part = { name: `warm-${randomUUID()}.txt`, bytes: fileBytes(100) };
    expect((await client.upload(await client.ticket(contextToken(), PAGE, declare([part])), [part])).status).toBe(200);
  }

  it('issues Connect tickets with signed terms (rt2), and a known tenant\'s upload is checked early and stored once', async () => {
    await warmUp();
    const part = { name: 'early.bin', bytes: fileBytes(300_000) };
    const ticket = await client.ticket(contextToken(), PAGE, declare([part]));
    expect(ticket.split('.')).toHaveLength(5);
    expect(ticket.startsWith('rt2.')).toBe(true);
    const response = await client.upload(ticket, [part]);
    expect(response.status).toBe(200);
    expect(await accessLog(response)).toMatchObject({ route: 'uploads', status: 200, ticketCheck: 'early' });
    expect(site.attachments(PAGE).filter((a) => a.title === 'early.bin')).toEqual([expect.objectContaining({ version: 1, sha256: sha256(part.bytes) })]);

    // A replay is answered from the ledger, on the early path too, and stores nothing new.
    const replay = await client.upload(ticket, [part]);
    expect(replay.status).toBe(200);
    expect(await accessLog(replay)).toMatchObject({ status: 200, ticketCheck: 'early' });
    expect(site.attachments(PAGE).filter((a) => a.title === 'early.bin')).toHaveLength(1);
  });

  it('a signed ticket the store no longer holds: 401, and the upload begun on its terms stores nothing', async () => {
    await warmUp();
    const part = { name: 'gone-from-store.bin', bytes: fileBytes(400_000) };
    const ticket = await client.ticket(contextToken(), PAGE, declare([part]));
    const ddb = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'local', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    try {
      const hash = createHash('sha256').update(ticket, 'utf8').digest('hex');
      await ddb.send(new DeleteItemCommand({ TableName: 'relay-e2e', Key: { pk: { S: `TENANT#${site.clientKey}` }, sk: { S: `TICKET#${hash}` } } }));
    } finally {
      ddb.destroy();
    }
    const before = attachmentCount();
    const sent = standIn.requests.length;
    const response = await client.upload(ticket, [part]);
    await expectError(response, 401, 'unauthorized');
    expect(await accessLog(response)).toMatchObject({ status: 401, ticketCheck: 'early', reason: 'unknown_ticket' });
    expect(attachmentCount()).toBe(before);
    // Whatever reached Confluence of it was cut off before its last bytes.
    expect(uploadRequestsSince(sent).filter((r) => r.status === 200)).toEqual([]);
    // Its claim was given back: nothing of the ticket is left in flight.
    const again = await client.upload(ticket, [part]);
    await expectError(again, 401, 'unauthorized');
  });

  it('a reinstall with a new secret between ticket and upload: the upload is redone on the stored records, once', async () => {
    await warmUp();
    const part = { name: 'across-reinstall.bin', bytes: fileBytes(200_000) };
    const ticket = await client.ticket(contextToken(), PAGE, declare([part]));
    // The relay's uploads function still holds the old secret; the ticket was signed under it.
    site.rotateSharedSecret();
    expect((await client.install(site.installRequest({ relayBaseUrl: relay.url }))).status).toBe(204);

    const response = await client.upload(ticket, [part]);
    const body = (await response.json()) as Record<string, any>;
    expect({ status: response.status, body }).toMatchObject({ status: 200, body: { attachments: [{ name: 'across-reinstall.bin', version: 1 }] } });
    expect(await accessLog(response)).toMatchObject({ status: 200, ticketCheck: 'early' });
    expect(site.attachments(PAGE).filter((a) => a.title === 'across-reinstall.bin')).toEqual([expect.objectContaining({ version: 1, sha256: sha256(part.bytes) })]);

    // The next upload is checked early again, with the new secret.
    const next = { name: 'after-rotation.bin', bytes: fileBytes(1000) };
    const nextResponse = await client.upload(await client.ticket(contextToken(), PAGE, declare([next])), [next]);
    expect(nextResponse.status).toBe(200);
    expect(await accessLog(nextResponse)).toMatchObject({ status: 200, ticketCheck: 'early' });
  });

  it('a signed ticket with altered terms: 401 from the store path, and nothing is sent to Confluence', async () => {
    await warmUp();
    const part = { name: 'forged-terms.bin', bytes: fileBytes(1000) };
    const ticket = await client.ticket(contextToken(), PAGE, declare([part]));
    const [prefix, tenant, random, , mac] = ticket.split('.');
    // Terms for another page, with the MAC of the original: refused before any byte moves.
    const terms = Buffer.from(JSON.stringify({ accountId: EDITOR, contentId: RESTRICTED_PAGE, files: [{ name: part.name, size: 1000, type: 'application/octet-stream' }], minorEdit: true, expiresAt: 4_000_000_000 })).toString('base64url');
    const forged = [prefix, tenant, random, terms, mac].join('.');
    const sent = standIn.requests.length;
    const response = await client.upload(forged, [part]);
    await expectError(response, 401, 'unauthorized');
    // Refused by the store before anything began (an early start logs `ticketCheck: early`).
    const line = await accessLog(response);
    expect(line).toMatchObject({ status: 401, reason: 'unknown_ticket' });
    expect(line).not.toHaveProperty('ticketCheck');
    expect(uploadRequestsSince(sent)).toEqual([]);
  });
});

describe('uninstall', () => {
  it('deletes the tenant: its tickets and tokens stop working', async () => {
    const part = { name: 'after-uninstall.txt', bytes: fileBytes(10) };
    const ticket = await client.ticket(contextToken(), PAGE, declare([part]));
    const before = attachmentCount();

    const response = await client.install(site.installRequest({ relayBaseUrl: relay.url, eventType: 'uninstalled' }), 'uninstalled');
    expect(response.status).toBe(204);

    await expectError(await client.upload(ticket, [part]), 401);
    await expectError(await client.requestTicket(`JWT ${contextToken()}`, { contentId: PAGE, files: declare([part]) }), 401);
    expect(attachmentCount()).toBe(before);
  });

  it('a re-install brings the tenant back with its new secret', async () => {
    expect((await client.install(site.installRequest({ relayBaseUrl: relay.url }))).status).toBe(204);
    const part = { name: 'after-reinstall.txt', bytes: fileBytes(10) };
    const ticket = await client.ticket(contextToken(), PAGE, declare([part]));
    expect((await client.upload(ticket, [part])).status).toBe(200);
  });
});

describe('observability', () => {
  it('writes one JSON access-log line per request, correlated by the API Gateway request id', async () => {
    const response = await fetch(`${relay.url}/health`);
    const requestId = response.headers.get('apigw-requestid');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const line = relay.logLines().find((l) => l.correlation_id === requestId && l.message === 'request');
    expect(line).toMatchObject({ level: 'INFO', route: 'health', status: 200, code: 'ok', latencyMs: expect.any(Number), function_name: 'health' });

    const uploadLines = relay.logLines().filter((l) => l.message === 'request' && l.route === 'uploads' && l.status === 200);
    expect(uploadLines.length).toBeGreaterThan(3);
    for (const upload of uploadLines) {
      expect(upload).toMatchObject({ tenant: site.clientKey, code: 'ok', bytes: expect.any(Number), files: expect.any(Number), correlation_id: expect.any(String) });
    }
    const refused = relay.logLines().find((l) => l.message === 'request' && l.route === 'uploads' && l.code === 'undeclared_file');
    expect(refused).toMatchObject({ status: 400 });
    const unauthorized = relay.logLines().find((l) => l.message === 'request' && l.status === 401);
    expect(unauthorized).toMatchObject({ code: 'unauthorized', reason: expect.any(String) });
  });

  it('prints nothing but JSON once started', () => {
    const lines = relay.output().split('\n').filter((l) => l.trim() && !l.startsWith('Relay listening'));
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
  });

  it('emits CloudWatch metrics as EMF', () => {
    const blobs = relay.logLines().filter((l) => l._aws) as Array<Record<string, any>>;
    const named = (name: string) => blobs.filter((b) => b._aws.CloudWatchMetrics[0].Metrics.some((m: { Name: string }) => m.Name === name));
    for (const blob of blobs) expect(blob._aws.CloudWatchMetrics[0].Namespace).toBe('ConfluenceUploadRelay');
    expect(named('UploadSucceeded').length).toBeGreaterThan(0);
    expect(named('BytesRelayed').reduce((sum, b) => sum + b.BytesRelayed, 0)).toBeGreaterThan(4 * 1024 * 1024);
    expect(named('ConfluenceLatency').length).toBeGreaterThan(0);
    expect(named('TicketsIssued').length).toBeGreaterThan(0);
    expect(named('UploadFailed').some((b) => b.code === 'undeclared_file')).toBe(true);
    expect(named('AuthFailures').some((b) => typeof b.kind === 'string')).toBe(true);
    expect(named('ColdStart').length).toBeGreaterThan(0);
  });
});

describe('data minimisation', () => {
  function filesUnder(dir: string, depth = 0): string[] {
    if (depth > 4) return [];
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return [];
    }
    return entries.flatMap((entry) => {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) return filesUnder(full, depth + 1);
      return entry.isFile() ? [full] : [];
    });
  }

  it('keeps no uploaded byte in the table, the temp directory or the logs, and logs no secret', async () => {
    // The uploads above really happened and carried the marker.
    expect(site.allAttachments().some((a) => a.bytes.includes(MARKER))).toBe(true);

    const dynamoClient = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
    const scan = await dynamoClient.send(new ScanCommand({ TableName: 'relay-e2e' }));
    const table = JSON.stringify(scan.Items);
    expect(scan.Items?.length).toBeGreaterThan(0);
    expect(table).not.toContain(MARKER);
    expect(table).not.toContain(Buffer.from(MARKER).toString('base64').slice(0, 24));

    const recent = filesUnder(os.tmpdir()).filter((file) => {
      try {
        const stat = statSync(file);
        return stat.mtimeMs >= startedAt && stat.size < 50 * 1024 * 1024;
      } catch {
        return false;
      }
    });
    for (const file of recent) {
      let content: Buffer;
      try {
        content = readFileSync(file);
      } catch {
        continue;
      }
      expect({ file, found: content.includes(MARKER) }).toEqual({ file, found: false });
    }

    const logs = relay.output();
    const lines = relay.logLines();
    expect(lines.filter((line) => line.message === 'request').length).toBeGreaterThan(20);
    expect(logs).not.toContain(MARKER);
    expect(logs).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/); // no JWT
    expect(logs).not.toMatch(/rt1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{20,}/); // no ticket
    expect(logs).not.toContain(site.sharedSecret);
    expect(logs).not.toContain('Zürich'); // file names only with LOG_FILE_NAMES=true
  });
});
