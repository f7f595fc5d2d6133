import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { RelayConfig } from '../core/config';
import { AppError } from '../core/errors';
import { isTransientAwsError } from '../store/dynamo';

/** What the staged-relay function is asked to do: relay one declared file of one ticket. */
export interface StagedRelayJob {
  tenantId: string;
  ticketHash: string;
  fileIndex: number;
}

/** One client per endpoint, reused across invocations. */
const clients = new Map<string, LambdaClient>();

/**
 * Starts the staged relay as an asynchronous invocation, so relaying a large
 * file is bounded by the worker's own timeout (up to 15 min), not by API
 * Gateway's 30 s.
 */
export async function invokeStagedRelay(
  config: Pick<RelayConfig, 'stagedRelayFunction' | 'lambdaEndpoint'> & Partial<Pick<RelayConfig, 'apiCallTimeoutMs'>>,
  job: StagedRelayJob,
): Promise<void> {
  if (!config.stagedRelayFunction) throw new AppError(500, 'internal_error', 'STAGED_RELAY_FUNCTION is not set.', { expose: false });
  const timeoutMs = config.apiCallTimeoutMs ?? DEFAULT_INVOKE_TIMEOUT_MS;
  const endpoint = config.lambdaEndpoint ?? '';
  let client = clients.get(endpoint);
  if (!client) {
    client = new LambdaClient({
      ...(endpoint ? { endpoint } : {}),
      // The SDK sets no timeout: a hung invoke would hold the request until API Gateway's 30 s.
      requestHandler: { connectionTimeout: timeoutMs, socketTimeout: timeoutMs },
    });
    clients.set(endpoint, client);
  }
  let status: number | undefined;
  try {
    const result = await client.send(
      new InvokeCommand({ FunctionName: config.stagedRelayFunction, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify(job)) }),
    );
    status = result.StatusCode;
  } catch (error) {
    // An event that was queued after all is harmless: only one delivery of a file's event relays it (startWork).
    if (isTransientAwsError(error)) throw relayUnavailable(error);
    throw error;
  }
  if (status !== 202) throw relayUnavailable(new Error(`asynchronous invoke answered ${status}`));
}

const DEFAULT_INVOKE_TIMEOUT_MS = 5_000;

function relayUnavailable(cause: unknown): AppError {
  return new AppError(503, 'relay_unavailable', 'The relay could not start on this file; try again shortly.', {
    cause,
    headers: { 'retry-after': '5' },
    reason: 'invoke_failed',
  });
}
