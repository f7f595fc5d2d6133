import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';

export type AsyncHandler = (event: unknown, context: Context) => Promise<unknown>;

/** Lambda's maximum timeout, which the staged-relay function is deployed with. */
const ASYNC_TIMEOUT_MS = 15 * 60 * 1000;

/**
 * The part of Lambda's Invoke API the relay uses — asynchronous invocation
 * (`X-Amz-Invocation-Type: Event`) — answering 202 and running the handler in
 * this process, so the relay's own `InvokeCommand` code path runs locally.
 */
export async function startLambdaInvokeEmulator(
  handlers: Record<string, AsyncHandler>,
  onError: (name: string, error: unknown) => void,
  /**
   * How many times each event is delivered, at once. Lambda queues
   * asynchronous events and may deliver one more than once even when nothing
   * failed; 2 makes that happen to every event. @default 1
   */
  deliveries = 1,
): Promise<{ endpoint: string; idle(): Promise<void>; close(): Promise<void> }> {
  const running = new Set<Promise<unknown>>();
  const server = http.createServer((req, res) => {
    const match = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/.exec(req.url?.split('?')[0] ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const name = match ? decodeURIComponent(match[1]) : '';
      const handler = handlers[name.split(':').pop() ?? name];
      if (req.method !== 'POST' || !handler) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ Type: 'User', Message: 'Function not found' }));
        return;
      }
      if (req.headers['x-amz-invocation-type'] !== 'Event') {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ Message: 'Only asynchronous invocation is emulated' }));
        return;
      }
      const payload = Buffer.concat(chunks).toString('utf8') || '{}';
      const requestId = randomUUID();
      const deadline = Date.now() + ASYNC_TIMEOUT_MS;
      res.writeHead(202, { 'x-amzn-requestid': requestId }).end();
      for (let delivery = 0; delivery < deliveries; delivery += 1) {
        const context = {
          functionName: name,
          awsRequestId: requestId,
          getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
        } as unknown as Context;
        const run = Promise.resolve()
          .then(() => handler(JSON.parse(payload) as unknown, context))
          .catch((error: unknown) => onError(name, error))
          .finally(() => running.delete(run));
        running.add(run);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    async idle() {
      await Promise.allSettled([...running]);
    },
    async close() {
      await Promise.allSettled([...running]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
