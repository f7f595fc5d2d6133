/** Request bodies and the "straight to Confluence" upload shared by the latency benchmarks. */
import { randomBytes } from 'node:crypto';
import { SymmetricAlgorithm, createQueryStringHash, encodeSymmetric, fromMethodAndUrl } from 'atlassian-jwt';

/** A multipart/form-data body with `fields` (text parts, first) and one `file` part. */
export function multipart(name: string, bytes: Buffer, fields: Record<string, string> = {}): { body: Buffer; contentType: string } {
  const boundary = `----bench${randomBytes(8).toString('hex')}`;
  const texts = Object.entries(fields).map(([field, value]) => `--${boundary}\r\nContent-Disposition: form-data; name="${field}"\r\n\r\n${value}\r\n`);
  const head = Buffer.from(
    `${texts.join('')}--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  return { body: Buffer.concat([head, bytes, Buffer.from(`\r\n--${boundary}--\r\n`)]), contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * Posts a multipart body straight to a stand-in page's attachment endpoint as
 * the app (the baseline every latency benchmark subtracts); returns the time
 * from request to the whole answer, and fails on anything but 200.
 */
export async function postStraight(
  site: { baseUrl: string; sharedSecret: string },
  pageId: string,
  { body, contentType }: { body: Buffer; contentType: string },
): Promise<number> {
  const url = `${site.baseUrl}/rest/api/content/${pageId}/child/attachment`;
  const iat = Math.floor(Date.now() / 1000);
  const jwt = encodeSymmetric(
    { iss: 'confluence-upload-relay', iat, exp: iat + 180, qsh: createQueryStringHash(fromMethodAndUrl('POST', url), false, site.baseUrl) },
    site.sharedSecret,
    SymmetricAlgorithm.HS256,
  );
  const started = performance.now();
  const response = await fetch(url, {
    method: 'POST',
    headers: { authorization: `JWT ${jwt}`, 'x-atlassian-token': 'no-check', 'content-type': contentType },
    body: new Uint8Array(body),
  });
  const text = await response.text();
  const ms = performance.now() - started;
  if (response.status !== 200) throw new Error(`straight upload failed: ${response.status} ${text}`);
  return ms;
}
