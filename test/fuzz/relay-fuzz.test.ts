import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { startConfluenceStandIn } from '../confluence-stand-in/stand-in';
import type { ConfluenceStandIn, Site } from '../confluence-stand-in/types';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { RelayClient } from '../helpers/relay-client';
import { applyAll, budgetMs, jwtMutations, runs, ticketMutations } from './mutations';

/**
 * Fuzzing through `npm run relay` (the Lambda bundles behind the local API
 * Gateway) against the Confluence stand-in: mutated credentials at the HTTP
 * edge, random and mutated multipart bodies against a valid ticket, and
 * hostile file names end to end. Every request must be answered in time and
 * never with a 5xx, and the stand-in must hold exactly what a browser meant
 * to upload: nothing for a refused request, exactly one attachment with the
 * right bytes and name for an accepted one.
 */
const REQUEST_TIMEOUT_MS = 15_000;
const PAGE = '8001';

let standIn: ConfluenceStandIn;
let site: Site;
let relay: RelayProcess;
let client: RelayClient;
let pageCounter = 9000;
let fileCounter = 0;

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const totalAttachments = () => site.allAttachments().length;
const contextToken = (accountId = 'fuzz-user') => site.contextToken({ accountId });

/** What an HTTP client can put in a header at all (visible ASCII); other mutations never reach a server. */
const sendable = (value: string) => value.length > 0 && /^[\x21-\x7e]+$/.test(value);

/** A request with a deadline: a hang fails the property instead of the whole suite. */
async function timed(url: string, init: RequestInit): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  return { status: response.status, body: await response.text() };
}

beforeAll(async () => {
  standIn = await startConfluenceStandIn({ appKey: 'confluence-upload-relay' });
  site = standIn.site();
  site.addPage(PAGE);
  relay = await startRelayProcess({
    CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
    ALLOWED_TENANT_HOSTS: '127.0.0.1',
    ALLOW_HTTP_TENANTS: 'true',
    UPLOAD_AS: 'app',
  });
  client = new RelayClient(relay.url);
  expect((await client.install(site.installRequest({ relayBaseUrl: relay.url }))).status).toBe(204);
}, 60_000);

afterAll(async () => {
  if (process.env.FUZZ_DUMP) require("fs").writeFileSync(process.env.FUZZ_DUMP, relay.output());
  await relay?.stop();
  await standIn?.close();
});

describe('mutated credentials at the HTTP edge', () => {
  it('never issues a ticket for a mutated context JWT (401, nothing created)', async () => {
    const valid = contextToken();
    const others = [contextToken('another-user'), standIn.installKey.publicKeyPem];
    await fc.assert(
      fc.asyncProperty(jwtMutations, async (mutations) => {
        const mutated = applyAll(valid, mutations, others);
        fc.pre(mutated !== valid && !others.includes(mutated) && sendable(mutated));
        const { status } = await timed(`${relay.url}/tickets`, {
          method: 'POST',
          headers: { authorization: `JWT ${mutated}`, 'content-type': 'application/json' },
          body: JSON.stringify({ contentId: PAGE, files: [{ name: 'x.txt', size: 1 }] }),
        });
        return status === 401;
      }),
      { numRuns: runs(40) },
    );
  }, budgetMs(60_000));

  it('never accepts a mutated ticket (401, no attachment)', async () => {
    const part = { name: 'ticketed.txt', bytes: randomBytes(64) };
    const valid = await client.ticket(contextToken(), PAGE, [{ name: part.name, size: 64 }]);
    const other = await client.ticket(contextToken(), PAGE, [{ name: 'other.txt', size: 64 }]);
    const before = totalAttachments();
    await fc.assert(
      fc.asyncProperty(ticketMutations, async (mutations) => {
        const mutated = applyAll(valid, mutations, [other]);
        fc.pre(mutated !== valid && mutated !== other && sendable(mutated));
        const response = await client.upload(mutated, [part]);
        await response.arrayBuffer();
        return response.status === 401 && totalAttachments() === before;
      }),
      { numRuns: runs(40) },
    );
  }, budgetMs(60_000));

  it('never installs (or re-keys) a tenant with a mutated signed-install JWT', async () => {
    const valid = site.installRequest({ relayBaseUrl: relay.url });
    const other = site.installRequest({ relayBaseUrl: relay.url, eventType: 'uninstalled' });
    // The attacker's body names the real clientKey with a secret of their own.
    const body = JSON.stringify({ ...JSON.parse(valid.body), sharedSecret: 'attacker-'.repeat(6) });
    await fc.assert(
      fc.asyncProperty(jwtMutations, async (mutations) => {
        const mutated = applyAll(valid.token, mutations, [other.token, standIn.installKey.publicKeyPem]);
        fc.pre(mutated !== valid.token && mutated !== other.token && sendable(mutated));
        const { status } = await timed(`${relay.url}/lifecycle/installed`, {
          method: 'POST',
          headers: { authorization: `JWT ${mutated}`, 'content-type': 'application/json' },
          body,
        });
        return status === 401;
      }),
      { numRuns: runs(25) },
    );
    // The tenant still has its own secret: its context tokens still get tickets.
    await expect(client.ticket(contextToken(), PAGE, [{ name: 'still-installed.txt', size: 1 }])).resolves.toEqual(expect.any(String));
  }, budgetMs(60_000));
});

// ---------------------------------------------------------------------------------------------------------

interface MultipartCase {
  body: Buffer;
  contentType: string;
}

const BOUNDARY = 'fuzzboundary7MA4YWxkTrZu0gW';

function validUpload(name: string, bytes: Buffer, boundary = BOUNDARY): MultipartCase {
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="comment"\r\n\r\nfuzzed\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="minorEdit"\r\n\r\ntrue\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

type BodyMutation = (input: MultipartCase) => MultipartCase;

const at = (position: number, length: number) => (length === 0 ? 0 : position % (length + 1));
const bodyMutation: fc.Arbitrary<BodyMutation> = fc.oneof(
  fc.record({ p: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }).map(({ p, bit }): BodyMutation => (input) => {
    const body = Buffer.from(input.body);
    if (body.length > 0) body[p % body.length] ^= 1 << bit;
    return { ...input, body };
  }),
  fc.nat().map((p): BodyMutation => (input) => ({ ...input, body: input.body.subarray(0, at(p, input.body.length)) })),
  fc.record({ p: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }).map(({ p, bytes }): BodyMutation => (input) => {
    const i = at(p, input.body.length);
    return { ...input, body: Buffer.concat([input.body.subarray(0, i), Buffer.from(bytes), input.body.subarray(i)]) };
  }),
  fc.record({ p: fc.nat(), n: fc.integer({ min: 1, max: 200 }) }).map(({ p, n }): BodyMutation => (input) => {
    const i = at(p, input.body.length);
    return { ...input, body: Buffer.concat([input.body.subarray(0, i), input.body.subarray(i + n)]) };
  }),
  fc.record({ p: fc.nat(), n: fc.integer({ min: 1, max: 400 }) }).map(({ p, n }): BodyMutation => (input) => {
    const i = at(p, input.body.length);
    return { ...input, body: Buffer.concat([input.body.subarray(0, i + n), input.body.subarray(i)]) };
  }),
  fc
    .constantFrom(
      (body: Buffer) => Buffer.from(body.toString('latin1').replace(/\r\n/g, '\n'), 'latin1'),
      (body: Buffer) => Buffer.from(body.toString('latin1').replace(/filename="/, 'filename*=UTF-8\'\''), 'latin1'),
      (body: Buffer) => Buffer.from(body.toString('latin1').replace(/name="file"/, 'name="file"; name="comment"'), 'latin1'),
      (body: Buffer) => Buffer.from(body.toString('latin1').replace(/Content-Type: application\/octet-stream/, 'Content-Type: text/html'), 'latin1'),
      (body: Buffer) => Buffer.concat([body, body]),
      (body: Buffer) => Buffer.from(body.toString('latin1').replace(`--${BOUNDARY}--`, `--${BOUNDARY}`), 'latin1'),
    )
    .map((change): BodyMutation => (input) => ({ ...input, body: change(input.body) })),
  fc
    .constantFrom(
      'multipart/form-data',
      `multipart/form-data; boundary="${BOUNDARY}"`,
      `multipart/form-data; boundary=${BOUNDARY}x`,
      `multipart/form-data; boundary=${BOUNDARY.slice(0, -1)}`,
      `MULTIPART/FORM-DATA; BOUNDARY=${BOUNDARY}`,
      `multipart/mixed; boundary=${BOUNDARY}`,
      `multipart/form-data; boundary=${BOUNDARY}; charset=utf-16`,
      'text/plain; charset=utf-8',
      'application/json',
      `multipart/form-data; boundary=`,
      `multipart/form-data; boundary=${'b'.repeat(300)}`,
    )
    .map((contentType): BodyMutation => (input) => ({ ...input, contentType })),
);

/** Where `needle` occurs in `haystack` (a relayed file must be a contiguous piece of what was sent). */
const contains = (haystack: Buffer, needle: Buffer) => needle.length === 0 || haystack.indexOf(needle) >= 0;

describe('random and mutated multipart bodies against a valid ticket', () => {
  it('never answer 5xx or hang, and create an attachment only for a valid upload of the declared file', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 4096 }),
        fc.array(bodyMutation, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 2048 }),
        async (size, mutations, randomBody, noise) => {
          fileCounter += 1;
          const name = `fuzz-${fileCounter}.bin`;
          const bytes = randomBytes(size);
          const ticket = await client.ticket(contextToken(), PAGE, [{ name, size, type: 'application/octet-stream' }]);
          const original = validUpload(name, bytes);
          const sent = randomBody ? { ...original, body: Buffer.from(noise) } : mutations.reduce((current, mutate) => mutate(current), original);
          const before = site.attachments(PAGE).filter((a) => a.title === name);
          const { status, body } = await timed(`${relay.url}/uploads`, {
            method: 'POST',
            headers: { authorization: `Bearer ${ticket}`, 'content-type': sent.contentType },
            body: new Uint8Array(sent.body),
          });
          const after = site.attachments(PAGE).filter((a) => a.title === name);
          expect({ status, body: status >= 500 ? body : '' }).toEqual({ status: expect.any(Number), body: '' });
          expect([200, 400, 413]).toContain(status);
          expect(before).toEqual([]);
          if (status !== 200) {
            expect(after).toEqual([]);
            return;
          }
          // Accepted: exactly the declared file, with bytes that are exactly a piece of what was sent.
          expect(after).toHaveLength(1);
          expect(after[0]).toMatchObject({ title: name, fileSize: size, version: 1 });
          expect(contains(sent.body, after[0].bytes)).toBe(true);
          if (sent.body.equals(original.body)) expect(after[0].sha256).toBe(sha256(bytes));
        },
      ),
      { numRuns: runs(100) },
    );
  }, budgetMs(120_000));
});

// ---------------------------------------------------------------------------------------------------------

/**
 * Pieces hostile names are made of. Not U+2028/U+2029: the stand-in's part-header
 * parser (a JS regex whose `.` stops at line terminators) refuses them, which
 * says nothing about the relay (what real Confluence does is unconfirmed).
 */
const HOSTILE_FRAGMENTS = [
  '../', '..\\', '/', '\\', 'C:\\', '/etc/passwd', '"', "'", '`', '\r', '\n', '\r\n', '\0', '\t', '\u0085',
  '%22', '%0D%0A', '%00', '%2F', '%2e%2e%2f', '%', '%%', '\u202E', '\u200F', '\u200E', '\uFEFF', '\u200B',
  '🚀', '👨‍👩‍👧', '🏳️‍🌈', 'é', 'e\u0301', '東京', 'Ω', ';', '=', ',', ' ', '.', '..',
  'name="evil"', 'filename="x.exe"', 'Content-Type: text/html', '\r\nContent-Disposition: form-data; name="comment"\r\n\r\ninjected',
  `--${'x'.repeat(10)}`, '\r\n--boundary--\r\n', '<script>', '${x}', 'x'.repeat(300),
];

const hostileName = fc.oneof(
  fc.array(fc.constantFrom(...HOSTILE_FRAGMENTS), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('')),
  fc
    .tuple(fc.array(fc.constantFrom(...HOSTILE_FRAGMENTS), { maxLength: 3 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }))
    .map(([parts, text]) => `${parts.join('')}${text}.txt`),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  fc.integer({ min: 256, max: 1500 }).map((length) => 'a'.repeat(length - 4) + '.txt'),
).map((name) => name.replace(/[\u2028\u2029]/g, '_'));

/** What the contract allows: the relay refuses exactly the names that cannot survive the trip. */
function mustBeRefused(name: string): boolean {
  return (
    name.trim() === '' ||
    name.length > 255 ||
    name === '.' ||
    name === '..' ||
    /[\u0000-\u001f\u007f/\\]/.test(name) ||
    name.normalize('NFC') !== name
  );
}

/** Requests a ticket for one hostile name on a fresh page; uploads it as a browser would when allowed. */
async function roundTrip(name: string): Promise<void> {
  pageCounter += 1;
  const page = String(pageCounter);
  site.addPage(page);
  const bytes = randomBytes(64);
  const before = totalAttachments();
  const issued = await timed(`${relay.url}/tickets`, {
    method: 'POST',
    headers: { authorization: `JWT ${contextToken()}`, 'content-type': 'application/json' },
    body: JSON.stringify({ contentId: page, files: [{ name, size: bytes.length, type: 'text/plain' }] }),
  });
  if (mustBeRefused(name)) {
    expect({ name, status: issued.status }).toEqual({ name, status: 400 });
    expect(JSON.parse(issued.body).error.code).toMatch(/^(bad_file_name|bad_request)$/);
    return;
  }
  expect({ name, status: issued.status, body: issued.status === 201 ? '' : issued.body }).toEqual({ name, status: 201, body: '' });
  const ticket = (JSON.parse(issued.body) as { ticket: string }).ticket;
  // undici's FormData encodes the filename as browsers do (WHATWG: `"` → %22, CR → %0D, LF → %0A).
  const response = await client.upload(ticket, [{ name, bytes, type: 'text/plain' }]);
  const answer = (await response.json()) as Record<string, any>;
  expect({ name, status: response.status, answer: response.status === 200 ? '' : answer }).toEqual({ name, status: 200, answer: '' });

  // Exactly one attachment appeared, on this page, with this name and these bytes: no injected part or header.
  const stored = site.attachments(page);
  expect(totalAttachments()).toBe(before + 1);
  expect(stored).toHaveLength(1);
  const expectedTitle = name.includes('"') ? name.replace(/"/g, '%22') : name;
  expect({ name, title: stored[0].title }).toEqual({ name, title: expectedTitle });
  expect(stored[0]).toMatchObject({ sha256: sha256(bytes), fileSize: bytes.length, mediaType: 'text/plain', minorEdit: true });
  expect(stored[0].comment).toBeUndefined();
  expect(answer.attachments).toEqual([expect.objectContaining({ name, title: expectedTitle, fileSize: bytes.length })]);
}

describe('hostile file names', () => {
  it.each([
    ['a path', '../../etc/passwd'],
    ['a Windows path', 'C:\\Windows\\system32\\evil.dll'],
    ['quotes', 'say "hi"; name="evil".txt'],
    ['CR/LF header injection', 'a.txt"\r\nContent-Type: text/html\r\n\r\n<script>'],
    ['a NUL', 'a\0b.txt'],
    ['1,000+ characters', `${'x'.repeat(1200)}.txt`],
    ['exactly 255 characters', `${'y'.repeat(251)}.txt`],
    ['right-to-left marks', 'invoice\u202Efdp.exe'],
    ['emoji and ZWJ sequences', '👨‍👩‍👧 family 🏳️‍🌈.png'],
    ['percent sequences', '100%25 %22done%22 %0D%0A.txt'],
    ['a backslash', 'back\\slash.txt'],
    ['a decomposed accent (not NFC)', 'cafe\u0301.txt'],
    ['only spaces', '   '],
    ['dots', '..'],
    ['dots and trailing spaces', '..     '],
    ['leading spaces and quotes', '     name="evil"'],
    ['a boundary look-alike', '--fuzzboundary7MA4YWxkTrZu0gW--'],
    ['a BOM and zero-width space', '\uFEFFhidden\u200B.txt'],
  ])('%s: round-trips exactly or is refused with 400 at ticket time', async (_label, name) => {
    await roundTrip(name);
  });

  it('generated hostile names round-trip exactly or are refused with 400 at ticket time', async () => {
    await fc.assert(fc.asyncProperty(hostileName, roundTrip), { numRuns: runs(80) });
  }, budgetMs(120_000));

  // A name with an unpaired UTF-16 surrogate (possible in Windows file names) has no UTF-8
  // form: a browser would send it as U+FFFD, so it is refused at ticket time.
  it('a lone surrogate is refused at ticket time', async () => {
    const name = 'broken\uD800name.txt';
    const issued = await client.requestTicket(`JWT ${contextToken()}`, { contentId: PAGE, files: [{ name, size: 1 }] });
    expect(issued.status).toBe(400);
  });
});
