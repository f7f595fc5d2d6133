import { BatchWriteCommand, DeleteCommand, GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
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
  /**
   * What uploads taught us about the site's attachment size limit, which no
   * API reveals (CONFCLOUD-71930): the smallest size Confluence refused as too
   * large, when, and the largest size it accepted.
   */
  siteLimit?: { refusedBytes?: number; refusedAt?: number; acceptedBytes?: number };
}

export const TENANT_SORT_KEY = '#TENANT';
const ALIAS_SORT_KEY = '#ALIAS';

function installationKey(installationId: string): string {
  return `INSTALLATION#${installationId}`;
}

/** How long a refusal for size is trusted: an admin may raise the limit. */
export const SITE_LIMIT_MEMORY_SECONDS = 86_400;

/** Whether a file of `size` bytes is known to be over the site's limit. */
export function knownTooLarge(tenant: Tenant, size: number, nowSeconds: number): boolean {
  const limit = tenant.siteLimit;
  if (!limit?.refusedBytes || !limit.refusedAt) return false;
  if (nowSeconds - limit.refusedAt > SITE_LIMIT_MEMORY_SECONDS) return false;
  // A later success at or above the refused size means the limit was raised.
  if ((limit.acceptedBytes ?? 0) >= limit.refusedBytes) return false;
  return size >= limit.refusedBytes;
}

export interface TenantStore {
  get(tenantId: string): Promise<Tenant | undefined>;
  put(tenant: Tenant): Promise<void>;
  /** Remembers a size the site refused (keeps the smallest) or accepted (keeps the largest). */
  recordSiteLimit(tenantId: string, observation: { refusedBytes: number; atSeconds: number } | { acceptedBytes: number }): Promise<void>;
  /** Deletes the tenant and every item held for it (tickets, ledger entries, its Forge alias). */
  deleteWithEverything(tenantId: string): Promise<number>;
  /**
   * The Connect tenant a Forge installation belongs to (Connect-on-Forge: the
   * install payload carried `installationId`), if any.
   */
  findByInstallation(installationId: string): Promise<string | undefined>;
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
      // A Connect-on-Forge install names its Forge installation: remember which
      // tenant that is, so Forge Remote calls land on the same tenant.
      if (tenant.installationId) {
        await client.send(
          new PutCommand({ TableName: tableName, Item: { pk: installationKey(tenant.installationId), sk: ALIAS_SORT_KEY, tenantId: tenant.tenantId } }),
        );
      }
    },

    async findByInstallation(installationId) {
      const { Item } = await client.send(
        new GetCommand({ TableName: tableName, Key: { pk: installationKey(installationId), sk: ALIAS_SORT_KEY }, ConsistentRead: true }),
      );
      return typeof Item?.tenantId === 'string' ? Item.tenantId : undefined;
    },

    async recordSiteLimit(tenantId, observation) {
      const key = { pk: tenantKey(tenantId), sk: TENANT_SORT_KEY };
      const [field, value] = 'refusedBytes' in observation ? ['refusedBytes', observation.refusedBytes] : ['acceptedBytes', observation.acceptedBytes];
      // Keep the smallest refusal / largest acceptance; a refusal also refreshes its time.
      const better = field === 'refusedBytes' ? '<' : '>';
      try {
        await client.send(
          new UpdateCommand({
            TableName: tableName,
            Key: key,
            UpdateExpression: 'SET siteLimit = if_not_exists(siteLimit, :empty)',
            ConditionExpression: 'attribute_exists(pk)',
            ExpressionAttributeValues: { ':empty': {} },
          }),
        );
        await client.send(
          new UpdateCommand({
            TableName: tableName,
            Key: key,
            UpdateExpression: field === 'refusedBytes' ? 'SET siteLimit.refusedBytes = :v, siteLimit.refusedAt = :at' : 'SET siteLimit.acceptedBytes = :v',
            ConditionExpression: `attribute_not_exists(siteLimit.${field}) OR :v ${better} siteLimit.${field}${field === 'refusedBytes' ? ' OR siteLimit.refusedAt < :stale' : ''}`,
            ExpressionAttributeValues:
              field === 'refusedBytes'
                ? { ':v': value, ':at': (observation as { atSeconds: number }).atSeconds, ':stale': (observation as { atSeconds: number }).atSeconds - SITE_LIMIT_MEMORY_SECONDS }
                : { ':v': value },
          }),
        );
      } catch (error) {
        if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
      }
    },

    async deleteWithEverything(tenantId) {
      let deleted = 0;
      const existing = await this.get(tenantId);
      if (existing?.installationId) {
        await client.send(new DeleteCommand({ TableName: tableName, Key: { pk: installationKey(existing.installationId), sk: ALIAS_SORT_KEY } }));
        deleted += 1;
      }
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
