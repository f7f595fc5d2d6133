/**
 * The fault matrix as data: the steps of an upload, the faults, and what the
 * browser sees for each (docs/reliability.md prints the same table). Every
 * fault lasts for the whole first attempt, retries included; then it is
 * lifted and the browser tries again with what it has (its ticket, if any).
 */
export const FAULTS = ['timeout', 'reset', '5xx', '429', 'slow drip'] as const;
export type FaultName = (typeof FAULTS)[number];

export const STEPS = {
  'install key fetch': { flow: 'install', where: 'GET {CONNECT_INSTALL_KEYS_URL}/{kid} (lifecycle installed)' },
  'tenant lookup': { flow: 'direct', where: 'DynamoDB GetItem of the tenant (POST /tickets)' },
  'ledger: ticket write': { flow: 'direct', where: 'DynamoDB PutItem of the ticket (POST /tickets)' },
  'ticket read': { flow: 'direct', where: 'DynamoDB BatchGetItem of the ticket and its tenant (POST /uploads; the tenant already known, so the upload starts on the signed ticket while the store is asked)' },
  'ledger: file claim': { flow: 'direct', where: 'DynamoDB PutItem of the file claim (POST /uploads)' },
  'ledger: result write': { flow: 'direct', where: 'DynamoDB UpdateItem of the result, after Confluence stored the file (POST /uploads)' },
  'token endpoint': { flow: 'direct', where: 'POST {OAUTH_TOKEN_URL} (act as user: the ticket-time permission self-check, or the upload)' },
  'permission check': { flow: 'direct', where: 'POST …/content/{id}/permission/check (POST /tickets)' },
  'upload to Confluence': { flow: 'direct', where: 'PUT …/content/{id}/child/attachment (POST /uploads)' },
  'staging check (HEAD)': { flow: 'staged', where: 'S3 HeadObject (POST /uploads/complete)' },
  'staging read (GET)': { flow: 'staged', where: 'S3 GetObject (staged relay)' },
  'staging delete': { flow: 'staged', where: 'S3 DeleteObject (staged relay, after Confluence answered)' },
} as const;
export type StepName = keyof typeof STEPS;

export interface Outcome {
  status: number;
  code: string;
  /** Attachments of the file at the stand-in after the faulted attempt. */
  attachments: number;
  /** Staged objects of the cell's tenant still in the bucket after the faulted attempt. */
  leftBehind: number;
  recoveryStatus: number;
  recoveryCode: string;
  attachmentsAfterRecovery: number;
}

export interface Expected {
  status: number;
  code: string;
  /** `<status> <code>` of the browser's second try, once the fault is gone. */
  recovery: string;
}

const e = (status: number, code: string, recovery = '200 ok'): Expected => ({ status, code, recovery });
const all = (outcome: Expected, drip: Expected = e(200, 'ok')): Record<FaultName, Expected> => ({
  timeout: outcome,
  reset: outcome,
  '5xx': outcome,
  '429': outcome,
  'slow drip': drip,
});

export const EXPECTED: Record<StepName, Record<FaultName, Expected>> = {
  'install key fetch': all(e(503, 'key_service_unavailable'), e(204, 'ok')),
  'tenant lookup': all(e(503, 'store_unavailable')),
  'ledger: ticket write': all(e(503, 'store_unavailable')),
  // The upload begun on the signed ticket is cut short before its last bytes.
  'ticket read': all(e(503, 'store_unavailable')),
  'ledger: file claim': all(e(503, 'store_unavailable')),
  // Confluence has the file: the browser is told (200), the claim stays until its lease runs out.
  'ledger: result write': all(e(200, 'ok', '409 already_uploaded')),
  'token endpoint': all(e(503, 'token_service_unavailable')),
  'permission check': {
    timeout: e(504, 'upstream_timeout'),
    reset: e(502, 'upstream_error'),
    '5xx': e(502, 'upstream_error'),
    '429': e(429, 'rate_limited'),
    'slow drip': e(200, 'ok'),
  },
  // After an ambiguous failure the claim is kept until its lease (120 s) runs out: never a second copy.
  'upload to Confluence': {
    timeout: e(504, 'upstream_timeout', '409 already_uploaded'),
    reset: e(502, 'upstream_error', '409 already_uploaded'),
    '5xx': e(502, 'upstream_error', '409 already_uploaded'),
    '429': e(429, 'rate_limited'),
    'slow drip': e(200, 'ok'),
  },
  'staging check (HEAD)': all(e(503, 'staging_unavailable')),
  'staging read (GET)': all(e(503, 'staging_unavailable')),
  'staging delete': all(e(200, 'ok')),
};
