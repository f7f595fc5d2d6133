import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { serializedBytes } from '../../functions/src/local/api-gateway';

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
