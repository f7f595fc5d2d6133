import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { RelayConfig } from '../core/config';

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

let cachedClient: DynamoDBDocumentClient | undefined;

/** The process-wide document client (created once, reused across invocations). */
export function documentClient(config: Pick<RelayConfig, 'dynamodbEndpoint'>): DynamoDBDocumentClient {
  cachedClient ??= DynamoDBDocumentClient.from(
    new DynamoDBClient(config.dynamodbEndpoint ? { endpoint: config.dynamodbEndpoint } : {}),
    { marshallOptions: { removeUndefinedValues: true } },
  );
  return cachedClient;
}
