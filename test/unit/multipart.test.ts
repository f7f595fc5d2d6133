import { Readable } from 'node:stream';
import { parseMultipart, bodyStream } from '../../functions/src/uploads/multipart';

const LIMITS = { maxFiles: 5, maxFileBytes: 1024, maxFields: 4, maxFieldBytes: 100 };
const BOUNDARY = 'xYzBoundary';
const CONTENT_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;

function body(parts: string[]): Buffer {
  return Buffer.from(`${parts.join('')}--${BOUNDARY}--\r\n`, 'utf8');
}
function filePart(filename: string, content: string, type = 'text/plain'): string {
  return `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: ${type}\r\n\r\n${content}\r\n`;
}
function fieldPart(name: string, value: string): string {
  return `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
}
/** Feeds a buffer in chunks of `size` bytes, as a slow network would. */
function chunked(buffer: Buffer, size: number): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < buffer.length; i += size) chunks.push(buffer.subarray(i, i + size));
  return Readable.from(chunks);
}

async function collect(source: Readable, contentType: string | undefined = CONTENT_TYPE) {
  const files: Array<{ filename: string; mimeType: string; content: string }> = [];
  const fields: Record<string, string> = {};
  await parseMultipart(contentType, source, LIMITS, {
    async onFile(info, stream) {
      const parts: Buffer[] = [];
      for await (const chunk of stream) parts.push(chunk as Buffer);
      files.push({ filename: info.filename, mimeType: info.mimeType, content: Buffer.concat(parts).toString('utf8') });
    },
    onField(name, value) {
      fields[name] = value;
    },
  });
  return { files, fields };
}

describe('multipart parsing', () => {
  const sample = body([fieldPart('comment', 'hello'), filePart('a.txt', 'alpha'), filePart('Zürich 東京 🚀.txt', 'beta\r\n--not-a-boundary')]);

  it.each([1, 2, 7, 64, 100_000])('gives the same parts when fed in %i-byte chunks', async (size) => {
    const { files, fields } = await collect(chunked(sample, size), CONTENT_TYPE);
    expect(fields).toEqual({ comment: 'hello' });
    expect(files).toEqual([
      { filename: 'a.txt', mimeType: 'text/plain', content: 'alpha' },
      { filename: 'Zürich 東京 🚀.txt', mimeType: 'text/plain', content: 'beta\r\n--not-a-boundary' },
    ]);
  });

  it('decodes a base64 API Gateway body slice by slice', async () => {
    const big = body([filePart('big.bin', 'x'.repeat(700_000))]);
    const limits = { ...LIMITS, maxFileBytes: 1_000_000 };
    let received = 0;
    await parseMultipart(CONTENT_TYPE, bodyStream(big.toString('base64'), true), limits, {
      async onFile(_info, stream) {
        for await (const chunk of stream) received += (chunk as Buffer).length;
      },
      onField() {},
    });
    expect(received).toBe(700_000);
  });

  it.each<[string, Buffer, string | undefined]>([
    ['garbage', Buffer.from('this is not multipart at all'), CONTENT_TYPE],
    ['no boundary parameter', sample, 'multipart/form-data'],
    ['wrong content type', sample, 'application/json'],
    ['missing content type', sample, undefined],
    ['truncated body', sample.subarray(0, sample.length - 30), CONTENT_TYPE],
    ['empty body', Buffer.alloc(0), CONTENT_TYPE],
    ['headers without end', Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"`), CONTENT_TYPE],
  ])('refuses %s with 400 bad_multipart', async (_name, payload, contentType) => {
    await expect(collect(chunked(payload, 3), contentType ?? '')).rejects.toMatchObject({ status: 400, code: 'bad_multipart' });
  });

  it('reports a file over the size limit as 413', async () => {
    const oversized = body([filePart('big.txt', 'y'.repeat(LIMITS.maxFileBytes + 10))]);
    await expect(collect(chunked(oversized, 50))).rejects.toMatchObject({ status: 413 });
  });

  it('refuses more parts than allowed', async () => {
    const many = body(Array.from({ length: 7 }, (_, i) => filePart(`f${i}.txt`, 'z')));
    await expect(collect(chunked(many, 11))).rejects.toMatchObject({ status: 400, code: 'too_many_parts' });
  });

  it('passes errors thrown by the visitor through unchanged', async () => {
    const failure = Object.assign(new Error('visitor says no'), { status: 418 });
    await expect(
      parseMultipart(CONTENT_TYPE, chunked(sample, 5), LIMITS, {
        async onFile() {
          throw failure;
        },
        onField() {},
      }),
    ).rejects.toBe(failure);
  });
});
