import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { endAtCloseDelimiter, parseMultipart } from '../../functions/src/uploads/multipart';
import { runs } from './mutations';

/**
 * The streaming multipart parser (in-process, so thousands of bodies are
 * cheap): whatever the body and however it is chunked, parsing settles —
 * resolves, or rejects with the contract's 400/413 — and never hangs, and a
 * visitor never sees more bytes than the body holds.
 */
const LIMITS = { maxFiles: 4, maxFileBytes: 4096, maxFields: 4, maxFieldBytes: 8000 };
const BOUNDARY = 'parserfuzzBoundary';
const SETTLE_MS = 2000;

function validBody(parts: Array<{ name: string; filename?: string; content: Buffer }>): Buffer {
  return Buffer.concat([
    ...parts.flatMap((part) => [
      Buffer.from(
        `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${part.name}"${part.filename === undefined ? '' : `; filename="${part.filename}"`}\r\n` +
          (part.filename === undefined ? '\r\n' : 'Content-Type: application/octet-stream\r\n\r\n'),
      ),
      part.content,
      Buffer.from('\r\n'),
    ]),
    Buffer.from(`--${BOUNDARY}--\r\n`),
  ]);
}

/** Parses with a visitor that reads every file; resolves to what happened, or 'hang'. */
async function parse(body: Buffer, chunkSizes: number[]): Promise<{ outcome: string; bytesSeen: number }> {
  const chunks: Buffer[] = [];
  for (let offset = 0, i = 0; offset < body.length; i += 1) {
    const size = Math.max(1, chunkSizes.length ? chunkSizes[i % chunkSizes.length] : body.length);
    chunks.push(body.subarray(offset, offset + size));
    offset += size;
  }
  let bytesSeen = 0;
  const parsing = parseMultipart(`multipart/form-data; boundary=${BOUNDARY}`, Readable.from(chunks), LIMITS, {
    async onFile(_info, stream) {
      for await (const chunk of stream) bytesSeen += (chunk as Buffer).length;
    },
    onField() {},
  }).then(
    () => 'resolved',
    (error: { status?: number }) => (error.status === 400 || error.status === 413 ? `rejected ${error.status}` : `threw ${String(error)}`),
  );
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([parsing, new Promise<string>((resolve) => (timer = setTimeout(() => resolve('hang'), SETTLE_MS)))]);
  clearTimeout(timer);
  return { outcome, bytesSeen };
}

const mutation = fc.oneof(
  fc.record({ p: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }).map(({ p, bit }) => (body: Buffer) => {
    const copy = Buffer.from(body);
    if (copy.length) copy[p % copy.length] ^= 1 << bit;
    return copy;
  }),
  fc.nat().map((p) => (body: Buffer) => body.subarray(0, p % (body.length + 1))),
  fc.record({ p: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }).map(({ p, bytes }) => (body: Buffer) => {
    const i = p % (body.length + 1);
    return Buffer.concat([body.subarray(0, i), Buffer.from(bytes), body.subarray(i)]);
  }),
  fc.record({ p: fc.nat(), n: fc.integer({ min: 1, max: 64 }) }).map(({ p, n }) => (body: Buffer) => {
    const i = p % (body.length + 1);
    return Buffer.concat([body.subarray(0, i), body.subarray(i + n)]);
  }),
  // The whole body again after its close delimiter (an epilogue that looks like parts).
  fc.constant((body: Buffer) => Buffer.concat([body, body])),
);

/** Runs bytes through endAtCloseDelimiter in the given chunk sizes. */
async function throughCut(boundary: string, body: Buffer, chunkSizes: number[]): Promise<Buffer> {
  const cut = endAtCloseDelimiter(boundary);
  const out: Buffer[] = [];
  cut.on('data', (chunk: Buffer) => out.push(chunk));
  const finished = new Promise((resolve) => cut.on('end', resolve));
  for (let offset = 0, i = 0; offset < body.length; i += 1) {
    const size = Math.max(1, chunkSizes.length ? chunkSizes[i % chunkSizes.length] : body.length);
    cut.write(body.subarray(offset, offset + size));
    offset += size;
  }
  cut.end();
  await finished;
  return Buffer.concat(out);
}

describe('the epilogue cut (endAtCloseDelimiter)', () => {
  it('passes exactly the bytes up to the first close delimiter, however the body is chunked', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.uint8Array({ maxLength: 100 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 4 }),
        async (noise, insertAt, epilogue, chunkSizes) => {
          const boundary = 'cutB';
          const delimiter = Buffer.from(`\r\n--${boundary}--`);
          let body = Buffer.from(noise);
          let expected = body;
          if (insertAt !== undefined) {
            const i = insertAt % (body.length + 1);
            const withClose = Buffer.concat([body.subarray(0, i), delimiter]);
            body = Buffer.concat([withClose, Buffer.from(epilogue), delimiter]);
            expected = withClose;
          }
          // The reference: the first delimiter (or one at the very start without its CRLF) ends the body.
          const atStart = body.subarray(0, delimiter.length - 2).equals(delimiter.subarray(2)) ? delimiter.length - 2 : -1;
          const first = body.indexOf(delimiter);
          const reference = atStart >= 0 ? body.subarray(0, atStart) : first >= 0 ? body.subarray(0, first + delimiter.length) : body;
          expect((await throughCut(boundary, body, chunkSizes)).equals(reference)).toBe(true);
          if (insertAt !== undefined && atStart < 0) expect(reference.equals(expected) || reference.length < expected.length).toBe(true);
        },
      ),
      { numRuns: runs(500) },
    );
  });
});

describe('multipart parser under mutated bodies', () => {
  it('always settles with a contract answer, whatever the body and its chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ file: fc.boolean(), size: fc.integer({ min: 0, max: 300 }) }), { minLength: 1, maxLength: 3 }),
        fc.array(mutation, { minLength: 0, maxLength: 3 }),
        fc.array(fc.integer({ min: 1, max: 97 }), { maxLength: 4 }),
        async (parts, mutations, chunkSizes) => {
          const body = mutations.reduce(
            (current, mutate) => mutate(current),
            validBody(parts.map((part, i) => ({ name: part.file ? 'file' : 'comment', filename: part.file ? `f${i}.bin` : undefined, content: randomBytes(part.size) }))),
          );
          const { outcome, bytesSeen } = await parse(body, chunkSizes);
          expect(['resolved', 'rejected 400', 'rejected 413']).toContain(outcome);
          expect(bytesSeen).toBeLessThanOrEqual(body.length);
        },
      ),
      { numRuns: runs(300) },
    );
  }, 60_000);

  it('refuses a skipped malformed part followed by a body cut short inside a file (found by fuzzing: it hung)', async () => {
    const body = Buffer.concat([
      Buffer.from(`--${BOUNDARY}\r\n\u0003ontent-Disposition: form-data; name="comment"\r\n\r\nfuzzed\r\n`),
      Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="minorEdit"\r\n\r\ntrue\r\n`),
      Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      randomBytes(10),
    ]);
    for (const chunkSizes of [[], [1], [7]]) expect((await parse(body, chunkSizes)).outcome).toBe('rejected 400');
  });

  it('ignores the epilogue after the close delimiter, even one cut short inside a part (found by fuzzing: it hung)', async () => {
    const content = randomBytes(100);
    const body = validBody([{ name: 'file', filename: 'a.bin', content }]);
    const withEpilogue = Buffer.concat([body, body.subarray(0, body.length - 20)]);
    for (const chunkSizes of [[], [1], [5], [64]]) {
      expect(await parse(withEpilogue, chunkSizes)).toEqual({ outcome: 'resolved', bytesSeen: content.length });
    }
  });
});
