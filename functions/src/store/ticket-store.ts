import { BatchGetCommand, DeleteCommand, GetCommand, PutCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { AppError } from '../core/errors';
import { TTL_ATTRIBUTE, tenantKey } from './dynamo';
import { TENANT_SORT_KEY, type Tenant } from './tenant-store';

export interface DeclaredFile {
  name: string;
  size: number;
  type: string;
  /** Staged files only: the object key the presigned POST allows. */
  stagingKey?: string;
}

export interface TicketRecord {
  tenantId: string;
  ticketHash: string;
  accountId: string;
  contentId: string;
  files: DeclaredFile[];
  comment?: string;
  minorEdit: boolean;
  /** Epoch seconds. */
  expiresAt: number;
  /** Forge tickets: where Confluence is and the OAuth token to call it with, encrypted. */
  forge?: ForgeGrant;
}

/** What a Forge ticket holds to reach Confluence, for its lifetime only. */
export interface ForgeGrant {
  /** `https://api.atlassian.com/ex/confluence/<cloudId>` (Confluence's REST API is under `/wiki`). */
  apiBaseUrl: string;
  installationId: string;
  /** `user` (x-forge-oauth-user: Confluence applies the user's rights) or `system` (the app). */
  tokenKind: 'user' | 'system';
  /** The token, sealed with the deployment's key and bound to this ticket. */
  sealedToken: string;
}

/** The shape returned to the browser for an uploaded file (the contract's `attachments[]`). */
export interface AttachmentResult {
  name: string;
  id: string;
  title: string;
  mediaType: string;
  fileSize: number;
  version: number;
  downloadUrl: string;
  /** What happened on Confluence: a new attachment, a new version of one with the same name, or a new one under a free name. */
  outcome?: 'created' | 'versioned' | 'renamed';
}

/** A failure recorded for a status read (staged uploads), in the contract's error terms. */
export interface RecordedFailure {
  status: number;
  code: string;
  message: string;
  headers?: Record<string, string>;
}

export type ClaimOutcome =
  | { state: 'claimed' }
  | { state: 'done'; result: AttachmentResult }
  | { state: 'in_flight' };

export type FileState =
  | { state: 'none' }
  | { state: 'in_flight' }
  | { state: 'done'; result: AttachmentResult }
  | { state: 'failed'; failure: RecordedFailure };

export interface TicketStore {
  put(ticket: TicketRecord): Promise<void>;
  get(tenantId: string, ticketHash: string): Promise<TicketRecord | undefined>;
  /** The ticket and its tenant's install record, in one round trip. */
  getWithTenant(tenantId: string, ticketHash: string): Promise<{ ticket?: TicketRecord; tenant?: Tenant }>;
  /** Marks a declared file as being uploaded, unless it already is or was. */
  claimFile(ticket: TicketRecord, fileIndex: number, leaseSeconds: number, nowSeconds: number): Promise<ClaimOutcome>;
  completeFile(ticket: TicketRecord, fileIndex: number, result: AttachmentResult): Promise<void>;
  /**
   * Marks a claimed file as taken by one worker (`workerId`); false when it is
   * not in flight or another worker has it. Lambda may deliver one
   * asynchronous event more than once: only the first delivery relays.
   */
  startWork(ticket: TicketRecord, fileIndex: number, workerId: string): Promise<boolean>;
  /** Gives a claim back after a failure that certainly created nothing, so the file can be sent again. */
  releaseFile(ticket: TicketRecord, fileIndex: number): Promise<void>;
  /** Records why a (staged) file failed, for status reads; the file may be claimed again. */
  failFile(ticket: TicketRecord, fileIndex: number, failure: RecordedFailure): Promise<void>;
  getFile(ticket: TicketRecord, fileIndex: number): Promise<FileState>;
}

function isConditionFailure(error: unknown): boolean {
  return (error as { name?: string } | null)?.name === 'ConditionalCheckFailedException';
}

/** Ledger entries outlive the ticket by a day so that replays and status reads still find the result. */
const LEDGER_GRACE_SECONDS = 86_400;

function ticketSortKey(ticketHash: string): string {
  return `TICKET#${ticketHash}`;
}

function fileSortKey(ticketHash: string, fileIndex: number): string {
  return `TICKET#${ticketHash}#FILE#${fileIndex}`;
}

export function dynamoTicketStore(client: DynamoDBDocumentClient, tableName: string): TicketStore {
  const fileKey = (ticket: TicketRecord, fileIndex: number) => ({
    pk: tenantKey(ticket.tenantId),
    sk: fileSortKey(ticket.ticketHash, fileIndex),
  });

  return {
    async put(ticket) {
      await client.send(
        new PutCommand({
          TableName: tableName,
          Item: {
            pk: tenantKey(ticket.tenantId),
            sk: ticketSortKey(ticket.ticketHash),
            ...ticket,
            [TTL_ATTRIBUTE]: ticket.expiresAt + LEDGER_GRACE_SECONDS,
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    },

    async get(tenantId, ticketHash) {
      const { Item } = await client.send(
        new GetCommand({
          TableName: tableName,
          Key: { pk: tenantKey(tenantId), sk: ticketSortKey(ticketHash) },
          ConsistentRead: true,
        }),
      );
      if (!Item) return undefined;
      const { pk: _pk, sk: _sk, [TTL_ATTRIBUTE]: _ttl, ...ticket } = Item;
      return ticket as TicketRecord;
    },

    async getWithTenant(tenantId, ticketHash) {
      const keys = [
        { pk: tenantKey(tenantId), sk: ticketSortKey(ticketHash) },
        { pk: tenantKey(tenantId), sk: TENANT_SORT_KEY },
      ];
      let pending: Record<string, unknown>[] = keys;
      const items: Record<string, unknown>[] = [];
      // DynamoDB may leave keys unprocessed under load: ask again for those (the SDK's backoff applies per call).
      for (let round = 0; pending.length > 0; round += 1) {
        if (round === 3) throw new AppError(503, 'store_unavailable', 'The relay cannot reach its store; try again later.', { headers: { 'retry-after': '5' } });
        const { Responses, UnprocessedKeys } = await client.send(
          new BatchGetCommand({ RequestItems: { [tableName]: { Keys: pending, ConsistentRead: true } } }),
        );
        items.push(...(Responses?.[tableName] ?? []));
        pending = (UnprocessedKeys?.[tableName]?.Keys as Record<string, unknown>[] | undefined) ?? [];
      }
      const ticketItem = items.find((item) => item.sk === keys[0].sk);
      const tenantItem = items.find((item) => item.sk === TENANT_SORT_KEY);
      let ticket: TicketRecord | undefined;
      if (ticketItem) {
        const { pk: _pk, sk: _sk, [TTL_ATTRIBUTE]: _ttl, ...rest } = ticketItem;
        ticket = rest as unknown as TicketRecord;
      }
      let tenant: Tenant | undefined;
      if (tenantItem) {
        const { pk: _pk, sk: _sk, ...rest } = tenantItem;
        tenant = rest as unknown as Tenant;
      }
      return { ticket, tenant };
    },

    async claimFile(ticket, fileIndex, leaseSeconds, nowSeconds) {
      try {
        await client.send(
          new PutCommand({
            TableName: tableName,
            Item: {
              ...fileKey(ticket, fileIndex),
              status: 'in_flight',
              leaseUntil: nowSeconds + leaseSeconds,
              [TTL_ATTRIBUTE]: ticket.expiresAt + LEDGER_GRACE_SECONDS,
            },
            // A claim whose lease ran out belongs to an invocation that died, and a
            // recorded failure created nothing: both may be taken over.
            ConditionExpression: 'attribute_not_exists(pk) OR (#status = :inFlight AND leaseUntil < :now) OR #status = :failed',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: { ':inFlight': 'in_flight', ':now': nowSeconds, ':failed': 'failed' },
          }),
        );
        return { state: 'claimed' };
      } catch (error) {
        if (!isConditionFailure(error)) throw error;
      }
      const { Item } = await client.send(
        new GetCommand({ TableName: tableName, Key: fileKey(ticket, fileIndex), ConsistentRead: true }),
      );
      if (Item?.status === 'done') return { state: 'done', result: Item.result as AttachmentResult };
      return { state: 'in_flight' };
    },

    async completeFile(ticket, fileIndex, result) {
      await client.send(
        new UpdateCommand({
          TableName: tableName,
          Key: fileKey(ticket, fileIndex),
          UpdateExpression: 'SET #status = :done, #result = :result REMOVE leaseUntil',
          ExpressionAttributeNames: { '#status': 'status', '#result': 'result' },
          ExpressionAttributeValues: { ':done': 'done', ':result': result },
        }),
      );
    },

    async startWork(ticket, fileIndex, workerId) {
      try {
        await client.send(
          new UpdateCommand({
            TableName: tableName,
            Key: fileKey(ticket, fileIndex),
            UpdateExpression: 'SET worker = :worker',
            // A new claim (after a lease ran out) replaces the item, worker included.
            ConditionExpression: '#status = :inFlight AND attribute_not_exists(worker)',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: { ':worker': workerId, ':inFlight': 'in_flight' },
          }),
        );
        return true;
      } catch (error) {
        if (isConditionFailure(error)) return false;
        throw error;
      }
    },

    async failFile(ticket, fileIndex, failure) {
      await client.send(
        new UpdateCommand({
          TableName: tableName,
          Key: fileKey(ticket, fileIndex),
          UpdateExpression: 'SET #status = :failed, failure = :failure REMOVE leaseUntil',
          ConditionExpression: '#status = :inFlight',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':failed': 'failed', ':failure': failure, ':inFlight': 'in_flight' },
        }),
      ).catch((error: unknown) => {
        if (!isConditionFailure(error)) throw error;
      });
    },

    async getFile(ticket, fileIndex) {
      const { Item } = await client.send(new GetCommand({ TableName: tableName, Key: fileKey(ticket, fileIndex), ConsistentRead: true }));
      if (!Item) return { state: 'none' };
      if (Item.status === 'done') return { state: 'done', result: Item.result as AttachmentResult };
      if (Item.status === 'failed') return { state: 'failed', failure: Item.failure as RecordedFailure };
      return { state: 'in_flight' };
    },

    async releaseFile(ticket, fileIndex) {
      try {
        await client.send(
          new DeleteCommand({
            TableName: tableName,
            Key: fileKey(ticket, fileIndex),
            ConditionExpression: '#status = :inFlight',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: { ':inFlight': 'in_flight' },
          }),
        );
      } catch (error) {
        if (!isConditionFailure(error)) throw error;
      }
    },
  };
}
