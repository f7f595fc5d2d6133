import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { createApiGatewayServer, readBody, serializedBytes } from '../../functions/src/local/api-gateway';

/** The local API Gateway counts the event it hands to Lambda without serialising a multi-megabyte body. */
function event(body: string | undefined, isBase64Encoded: boolean): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: 'POST /uploads',
    rawPath: '/uploads',
    rawQueryString: 'a=1&b=é',
    headers: { 'content-type': 'multipart/form-data; boundary=x', 'x-quote': 'say "hi"' },
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName: 'localhost',
      domainPrefix: 'local',
      http: { method: 'POST', path: '/uploads', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'jest' },
      requestId: 'r',
      routeKey: 'POST /uploads',
      stage: '$default',
      time: '04/Dec/2026:00:00:00 +0000',
      timeEpoch: 0,
    },
    body,
    isBase64Encoded,
  };
}

const exact = (e: APIGatewayProxyEventV2) => Buffer.byteLength(JSON.stringify(e));

it.each([
  ['no body', event(undefined, false)],
  ['an empty text body', event('', false)],
  ['a base64 body', event(randomBytes(100_003).toString('base64'), true)],
  ['a text body with quotes, backslashes, controls and emoji', event('{"a":"b\\\\c"}\n\t\u0001 Zürich 🚀 \u2028', false)],
])('counts %s exactly as JSON.stringify would', (_name, e) => {
  expect(serializedBytes(e)).toBe(exact(e));
});

it('agrees with JSON.stringify for any text or binary body', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.uint8Array().map((bytes) => Buffer.from(bytes).toString('base64'))), fc.boolean(), (body, base64) => {
      const e = event(body, base64 && /^[A-Za-z0-9+/=]*$/.test(body));
      expect(serializedBytes(e)).toBe(exact(e));
    }),
    { numRuns: 300 },
  );
});

it('base64-encodes a body read in chunks of any length exactly as the whole would be', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 8 }), async (bytes, sizes) => {
      const body = Buffer.from(bytes);
      const chunks: Buffer[] = [];
      for (let offset = 0, i = 0; offset < body.length; i += 1) {
        chunks.push(body.subarray(offset, offset + sizes[i % sizes.length]));
        offset += sizes[i % sizes.length];
      }
      expect(await readBody(Readable.from(chunks), true)).toEqual({ bytes: body.length, text: body.toString('base64') });
    }),
    { numRuns: 500 },
  );
});

describe('the body as the handler gets it', () => {
  let server: http.Server;
  let url: string;
  let seen: APIGatewayProxyEventV2 | undefined;
  const lastEvent = () => seen;
  beforeAll(async () => {
    server = createApiGatewayServer({
      routes: [{ method: 'POST', path: '/echo', handler: 'echo' }],
      handlers: {
        echo: async (e) => {
          seen = e;
          return { statusCode: 204 };
        },
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/echo`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** Posts `body` in pieces of the given sizes, each written on its own, so they arrive as separate chunks. */
  function post(body: Buffer, sizes: number[], contentType: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const request = http.request(url, { method: 'POST', headers: { 'content-type': contentType, 'content-length': body.length } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
      let offset = 0;
      const next = () => {
        if (offset >= body.length) return request.end();
        const size = sizes[offset % sizes.length] || 1;
        request.write(body.subarray(offset, offset + size));
        offset += size;
        setImmediate(next);
      };
      next();
    });
  }

  it('base64-encodes a binary body arriving in chunks of any length exactly as one piece would be', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 }), async (bytes, sizes) => {
        seen = undefined;
        expect(await post(Buffer.from(bytes), sizes, 'application/octet-stream')).toBe(204);
        expect(lastEvent()?.isBase64Encoded).toBe(true);
        expect(lastEvent()?.body).toBe(Buffer.from(bytes).toString('base64'));
      }),
      { numRuns: 40 },
    );
  });

  it('hands a text body over as UTF-8, even when a character is split across chunks', async () => {
    const text = '{"name":"Zürich 東京 🚀"}';
    expect(await post(Buffer.from(text), [1, 2, 3], 'application/json')).toBe(204);
    expect(seen).toMatchObject({ isBase64Encoded: false, body: text });
  });
});
