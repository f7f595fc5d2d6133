/**
 * A browser stand-in for the memory benchmarks, in a process of its own so
 * that the bodies it builds never count in the measured server's RSS. Each
 * line on stdin is a job (JSON: url, headers, count, size, prefix); it sends
 * `count` multipart uploads of `size` random bytes at once and answers one
 * JSON line with their statuses.
 */
import { randomBytes } from 'node:crypto';
import readline from 'node:readline';

interface Job {
  url: string;
  headers: Record<string, string>;
  count: number;
  size: number;
  prefix: string;
}

function multipart(name: string, bytes: Buffer): { body: Buffer; contentType: string } {
  const boundary = `----client${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  return { body: Buffer.concat([head, bytes, Buffer.from(`\r\n--${boundary}--\r\n`)]), contentType: `multipart/form-data; boundary=${boundary}` };
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const job = JSON.parse(line) as Job;
  // Bodies are built before the first byte goes out, so building them is not part of the measurement.
  const uploads = Array.from({ length: job.count }, (_, i) => multipart(`${job.prefix}-${i}.bin`, randomBytes(job.size)));
  void Promise.all(
    uploads.map(async ({ body, contentType }) => {
      const response = await fetch(job.url, { method: 'POST', headers: { ...job.headers, 'content-type': contentType }, body: new Uint8Array(body) });
      await response.arrayBuffer();
      return response.status;
    }),
  ).then(
    (statuses) => process.stdout.write(`${JSON.stringify({ statuses })}\n`),
    (error: Error) => process.stdout.write(`${JSON.stringify({ error: error.message })}\n`),
  );
});
