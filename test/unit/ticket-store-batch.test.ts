import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { dynamoTicketStore } from '../../functions/src/store/ticket-store';

/**
 * The error branch of reading a ticket with its tenant: DynamoDB may answer a
 * BatchGetItem with some keys unprocessed (under throttling). Real dynalite
 * never does, so a scripted client stands in for this branch only.
 */
const TABLE = 'relay';
const ticketItem = { pk: 'TENANT#t1', sk: 'TICKET#h1', tenantId: 't1', ticketHash: 'h1', ttl: 123, expiresAt: 9 };
const tenantItem = { pk: 'TENANT#t1', sk: '#TENANT', tenantId: 't1', baseUrl: 'https://x.atlassian.net/wiki' };

function scripted(answers: Array<{ items: Record<string, unknown>[]; unprocessed: Record<string, unknown>[] }>) {
  const asked: unknown[][] = [];
  const client = {
    async send(command: { input: { RequestItems: Record<string, { Keys: unknown[] }> } }) {
      asked.push(command.input.RequestItems[TABLE].Keys);
      const answer = answers.shift() ?? { items: [], unprocessed: command.input.RequestItems[TABLE].Keys as Record<string, unknown>[] };
      return { Responses: { [TABLE]: answer.items }, UnprocessedKeys: answer.unprocessed.length ? { [TABLE]: { Keys: answer.unprocessed } } : {} };
    },
  } as unknown as DynamoDBDocumentClient;
  return { store: dynamoTicketStore(client, TABLE), asked };
}

it('asks again for unprocessed keys and returns both records', async () => {
  const { store, asked } = scripted([
    { items: [ticketItem], unprocessed: [{ pk: 'TENANT#t1', sk: '#TENANT' }] },
    { items: [tenantItem], unprocessed: [] },
  ]);
  const { ticket, tenant } = await store.getWithTenant('t1', 'h1');
  expect(ticket).toEqual({ tenantId: 't1', ticketHash: 'h1', expiresAt: 9 });
  expect(tenant).toEqual({ tenantId: 't1', baseUrl: 'https://x.atlassian.net/wiki' });
  expect(asked).toEqual([
    [
      { pk: 'TENANT#t1', sk: 'TICKET#h1' },
      { pk: 'TENANT#t1', sk: '#TENANT' },
    ],
    [{ pk: 'TENANT#t1', sk: '#TENANT' }],
  ]);
});

it('answers 503 store_unavailable when keys stay unprocessed', async () => {
  const { store, asked } = scripted([]);
  await expect(store.getWithTenant('t1', 'h1')).rejects.toMatchObject({ status: 503, code: 'store_unavailable', headers: { 'retry-after': '5' } });
  expect(asked).toHaveLength(3);
});

it('returns neither when neither exists', async () => {
  const { store } = scripted([{ items: [], unprocessed: [] }]);
  await expect(store.getWithTenant('t1', 'h1')).resolves.toEqual({ ticket: undefined, tenant: undefined });
});
