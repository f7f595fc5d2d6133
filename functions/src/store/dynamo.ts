import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { RelayConfig } from '../core/config';
import { AppError } from '../core/errors';

/**
 * One table holds everything, partitioned by tenant so that an uninstall can
 * delete all of a tenant's items with one query:
 *   pk = `TENANT#<tenantId>`
 *   sk = `#TENANT`                      the install record
 *        `TICKET#<sha256(ticket)>`      an upload ticket (expires)
 *        `TICKET#<hash>#FILE#<index>`   the once-per-file ledger entry (expires)
 * `ttl` (epoch seconds) lets DynamoDB delete expired ticket items; the code
 * checks expiry itself as well, since TTL deletion lags.
 */
export const TTL_ATTRIBUTE = 'ttl';

export function tenantKey(tenantId: string): string {
  return `TENANT#${tenantId}`;
}

/** Per-attempt socket timeout when the configuration does not say (API_CALL_TIMEOUT_MS's default). */
const DEFAULT_STORE_TIMEOUT_MS = 5_000;

/**
 * AWS SDK errors that say the store (or the way to it) is failing rather than
 * that the request was wrong: network errors, timeouts, throttling, 5xx.
 * Exported for the staging bucket, which fails the same ways.
 */
export function isTransientAwsError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const meta = error as Error & { $fault?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown; code?: string };
  const status = meta.$metadata?.httpStatusCode;
  if (meta.$fault === 'server' || (status !== undefined && (status >= 500 || status === 429))) return true;
  if (/Throttl|ProvisionedThroughputExceeded|RequestLimitExceeded|SlowDown|TimeoutError|RequestTimeout/.test(meta.name)) return true;
  if (meta.$retryable) return true;
  // Network failures carry no HTTP status: ECONNRESET, ECONNREFUSED, EPIPE, ETIMEDOUT...
  return status === undefined && meta.$fault === undefined && (meta.code !== undefined || /socket|ECONN|EPIPE|timed out/i.test(meta.message));
}

/**
 * Turns a store failure that survived the SDK's own retries into the
 * contract's 503 with a code of its own, instead of an anonymous 500:
 * the caller may try again, and the log says which system failed.
 */
export function storeUnavailable(error: unknown): unknown {
  if (error instanceof AppError || !isTransientAwsError(error)) return error;
  return new AppError(503, 'store_unavailable', 'The relay cannot reach its store; try again later.', {
    cause: error,
    headers: { 'retry-after': '5' },
    reason: `store_${(error as Error).name}`,
  });
}

let cachedClient: DynamoDBDocumentClient | undefined;

/**
 * The process-wide document client (created once, reused across invocations).
 * Each attempt is cut after `apiCallTimeoutMs` without progress (the SDK sets
 * no timeout of its own, so a hung connection would otherwise hold the request
 * until API Gateway's 30 s), and what still fails after the SDK's retries
 * leaves as `503 store_unavailable`.
 */
export function documentClient(config: Pick<RelayConfig, 'dynamodbEndpoint'> & Partial<Pick<RelayConfig, 'apiCallTimeoutMs'>>): DynamoDBDocumentClient {
  if (cachedClient) return cachedClient;
  const timeoutMs = config.apiCallTimeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
  const client = DynamoDBDocumentClient.from(
    new DynamoDBClient({
      ...(config.dynamodbEndpoint ? { endpoint: config.dynamodbEndpoint } : {}),
      requestHandler: { connectionTimeout: timeoutMs, socketTimeout: timeoutMs },
    }),
    { marshallOptions: { removeUndefinedValues: true } },
  );
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        throw storeUnavailable(error);
      }
    },
    { step: 'initialize', name: 'storeUnavailable' },
  );
  cachedClient = client;
  return client;
}
