import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { invokeStagedRelay } from '../../functions/src/staging/invoke';
import { AppError } from '../../functions/src/core/errors';

/**
 * Starting the staged relay (an asynchronous Lambda invoke) against real HTTP
 * endpoints on loopback: what `/uploads/complete` answers when Lambda cannot
 * take the event.
 */
const job = { tenantId: 't', ticketHash: 'h', fileIndex: 0 };
const config = (endpoint: string) => ({ stagedRelayFunction: 'staged-relay', lambdaEndpoint: endpoint, apiCallTimeoutMs: 1000 });

beforeAll(() => {
  process.env.AWS_REGION ??= 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID ??= 'test';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'test';
});

async function lambdaStandIn(answer: (res: http.ServerResponse) => void): Promise<{ endpoint: string; calls: () => number; close(): Promise<void> }> {
  let calls = 0;
  const server = http.createServer((req, res) => {
    calls += 1;
    req.resume();
    req.on('end', () => answer(res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls: () => calls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

it('starts the relay when Lambda queues the event (202)', async () => {
  const lambda = await lambdaStandIn((res) => res.writeHead(202).end());
  try {
    await expect(invokeStagedRelay(config(lambda.endpoint), job)).resolves.toBeUndefined();
    expect(lambda.calls()).toBe(1);
  } finally {
    await lambda.close();
  }
});

it.each<[string, (res: http.ServerResponse) => void]>([
  ['answers 500', (res) => res.writeHead(500, { 'content-type': 'application/json' }).end('{"Type":"Service","message":"boom"}')],
  ['throttles (429)', (res) => res.writeHead(429, { 'content-type': 'application/json', 'x-amzn-errortype': 'TooManyRequestsException' }).end('{"message":"slow down"}')],
  ['never answers', () => undefined],
])('answers 503 relay_unavailable with Retry-After when Lambda %s', async (_label, answer) => {
  const lambda = await lambdaStandIn(answer);
  try {
    const error = await invokeStagedRelay(config(lambda.endpoint), job).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ status: 503, code: 'relay_unavailable', headers: { 'retry-after': '5' } });
  } finally {
    await lambda.close();
  }
}, 20_000);

it('answers 503 relay_unavailable when Lambda cannot be reached at all', async () => {
  const lambda = await lambdaStandIn(() => undefined);
  const { endpoint } = lambda;
  await lambda.close();
  await expect(invokeStagedRelay(config(endpoint), job)).rejects.toMatchObject({ status: 503, code: 'relay_unavailable' });
}, 20_000);
