import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { RelayConfig } from '../core/config';
import { AppError } from '../core/errors';

/** What the staged-relay function is asked to do: relay one declared file of one ticket. */
export interface StagedRelayJob {
  tenantId: string;
  ticketHash: string;
  fileIndex: number;
}

let cachedClient: LambdaClient | undefined;

/**
 * Starts the staged relay as an asynchronous invocation, so relaying a large
 * file is bounded by the worker's own timeout (up to 15 min), not by API
 * Gateway's 30 s.
 */
export async function invokeStagedRelay(config: Pick<RelayConfig, 'stagedRelayFunction' | 'lambdaEndpoint'>, job: StagedRelayJob): Promise<void> {
  if (!config.stagedRelayFunction) throw new AppError(500, 'internal_error', 'STAGED_RELAY_FUNCTION is not set.', { expose: false });
  cachedClient ??= new LambdaClient(config.lambdaEndpoint ? { endpoint: config.lambdaEndpoint } : {});
  const result = await cachedClient.send(
    new InvokeCommand({ FunctionName: config.stagedRelayFunction, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify(job)) }),
  );
  if (result.StatusCode !== 202) throw new Error(`asynchronous invoke answered ${result.StatusCode}`);
}
