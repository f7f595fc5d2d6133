import { BatchWriteCommand, GetCommand, PutCommand, QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { tenantKey } from './dynamo';

/** What the relay keeps of an install: the only data it holds for longer than a ticket. */
export interface Tenant {
  /** Connect clientKey (Forge tenants: the installation id). */
  tenantId: string;
  sharedSecret: string;
  baseUrl: string;
  displayUrl?: string;
  productType?: string;
  oauthClientId?: string;
  /** Forge installation ARI of a Connect-on-Forge install. */
  installationId?: string;
  installedAt: string;
}

const TENANT_SORT_KEY = '#TENANT';

export interface TenantStore {
  get(tenantId: string): Promise<Tenant | undefined>;
  put(tenant: Tenant): Promise<void>;
  /** Deletes the tenant and every item held for it (tickets, ledger entries). */
  deleteWithEverything(tenantId: string): Promise<number>;
}

export function dynamoTenantStore(client: DynamoDBDocumentClient, tableName: string): TenantStore {
  return {
    async get(tenantId) {
      const { Item } = await client.send(
        new GetCommand({ TableName: tableName, Key: { pk: tenantKey(tenantId), sk: TENANT_SORT_KEY }, ConsistentRead: true }),
      );
      if (!Item) return undefined;
      const { pk: _pk, sk: _sk, ...tenant } = Item;
      return tenant as Tenant;
    },

    async put(tenant) {
      await client.send(
        new PutCommand({ TableName: tableName, Item: { pk: tenantKey(tenant.tenantId), sk: TENANT_SORT_KEY, ...tenant } }),
      );
    },

    async deleteWithEverything(tenantId) {
      let deleted = 0;
      let startKey: Record<string, unknown> | undefined;
      do {
        const page = await client.send(
          new QueryCommand({
            TableName: tableName,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: { ':pk': tenantKey(tenantId) },
            ProjectionExpression: 'pk, sk',
            ExclusiveStartKey: startKey,
          }),
        );
        const keys = page.Items ?? [];
        for (let i = 0; i < keys.length; i += 25) {
          let requests = keys.slice(i, i + 25).map((key) => ({ DeleteRequest: { Key: { pk: key.pk, sk: key.sk } } }));
          // BatchWrite may hand back unprocessed items under load; retry them.
          for (let attempt = 0; requests.length > 0 && attempt < 5; attempt += 1) {
            const result = await client.send(new BatchWriteCommand({ RequestItems: { [tableName]: requests } }));
            requests = (result.UnprocessedItems?.[tableName] ?? []) as typeof requests;
          }
          if (requests.length > 0) throw new Error('DynamoDB left items unprocessed after retries');
        }
        deleted += keys.length;
        startKey = page.LastEvaluatedKey;
      } while (startKey);
      return deleted;
    },
  };
}
