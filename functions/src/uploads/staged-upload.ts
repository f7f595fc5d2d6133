import { randomUUID } from 'node:crypto';
import { AppError, badRequest } from '../core/errors';
import type { StagingBucket } from '../staging/s3';
import type { StagedRelayJob } from '../staging/invoke';
import type { AttachmentResult, DeclaredFile, FileState, RecordedFailure, TicketRecord, TicketStore } from '../store/ticket-store';
import { verifyTicket } from '../tickets/verify-ticket';
import type { FileRelay } from './relay-file';

/** The answer to a completion or a status read. */
export type StagedAnswer =
  | { status: 200; body: { attachments: AttachmentResult[] } }
  | { status: 202; body: { status: 'relaying'; statusUrl: string } }
  | { status: 'failed'; failure: RecordedFailure };

interface TicketDeps {
  tickets: TicketStore;
  nowSeconds: () => number;
}

export interface CompleteDeps extends TicketDeps {
  staging: StagingBucket;
  relayBaseUrl: string;
  invoke(job: StagedRelayJob): Promise<void>;
  /** How long the claim is held: longer than the staged-relay function may run. */
  leaseSeconds: number;
  /** Epoch ms until which the request may wait for the relay to finish before answering 202. */
  waitUntilMs: number;
  pollIntervalMs?: number;
}

function findStagedFile(ticket: TicketRecord, name: unknown): { index: number; file: DeclaredFile } {
  if (typeof name !== 'string' || !name) throw badRequest('bad_request', 'name must name a file of the ticket.');
  const index = ticket.files.findIndex((file) => file.name === name);
  if (index < 0) throw badRequest('undeclared_file', 'That file is not on the ticket.');
  const file = ticket.files[index];
  if (!file.stagingKey) throw badRequest('not_staged', 'That file is uploaded directly to /uploads, not through the staging bucket.');
  return { index, file };
}

function statusUrl(relayBaseUrl: string, name: string): string {
  return `${relayBaseUrl}/uploads/status?name=${encodeURIComponent(name)}`;
}

function answerFor(state: FileState, relayBaseUrl: string, name: string): StagedAnswer | undefined {
  if (state.state === 'done') return { status: 200, body: { attachments: [state.result] } };
  if (state.state === 'failed') return { status: 'failed', failure: state.failure };
  if (state.state === 'in_flight') return { status: 202, body: { status: 'relaying', statusUrl: statusUrl(relayBaseUrl, name) } };
  return undefined;
}

/** The contract's error for a recorded failure. */
export function failureError(failure: RecordedFailure): AppError {
  return new AppError(failure.status, failure.code, failure.message, { headers: failure.headers });
}

export function recordableFailure(error: unknown): RecordedFailure {
  if (error instanceof AppError && error.expose) {
    return { status: error.status, code: error.code, message: error.message, headers: error.headers };
  }
  if (error instanceof AppError) return { status: error.status, code: error.code, message: 'The file could not be relayed.' };
  return { status: 502, code: 'upstream_error', message: 'The file could not be relayed.' };
}

/**
 * `POST /uploads/complete`: checks the object the browser put in the staging
 * bucket against the ticket (size and type exactly: a POST policy is not
 * trusted to have been enforced), then starts the asynchronous relay and waits
 * for it while the request may; a mismatching object is deleted at once.
 */
export async function completeStagedUpload(
  request: { authorization: string | undefined; body: Record<string, unknown> },
  deps: CompleteDeps,
): Promise<{ tenantId: string; answer: StagedAnswer; file: DeclaredFile }> {
  const { ticket, tenantId } = await verifyTicket(request.authorization, deps);
  const { index, file } = findStagedFile(ticket, request.body.name);
  const key = file.stagingKey as string;

  const claim = await deps.tickets.claimFile(ticket, index, deps.leaseSeconds, deps.nowSeconds());
  if (claim.state === 'done') return { tenantId, file, answer: { status: 200, body: { attachments: [claim.result] } } };
  if (claim.state === 'in_flight') {
    return { tenantId, file, answer: { status: 202, body: { status: 'relaying', statusUrl: statusUrl(deps.relayBaseUrl, file.name) } } };
  }

  try {
    const object = await deps.staging.head(key);
    if (!object) throw badRequest('not_uploaded', 'The file has not been uploaded to the staging bucket.');
    if (object.size !== file.size || (object.contentType ?? '').toLowerCase() !== file.type) {
      await deps.staging.delete(key);
      if (object.size > file.size) throw new AppError(413, 'larger_than_declared', 'The staged file is larger than declared on the ticket.');
      if (object.size !== file.size) throw badRequest('size_mismatch', 'The staged file is smaller than declared on the ticket.');
      throw badRequest('type_mismatch', 'The staged file has another type than declared on the ticket.');
    }
    await deps.invoke({ tenantId, ticketHash: ticket.ticketHash, fileIndex: index });
  } catch (error) {
    await deps.tickets.releaseFile(ticket, index);
    throw error;
  }

  const poll = deps.pollIntervalMs ?? 200;
  while (Date.now() + poll < deps.waitUntilMs) {
    await new Promise((resolve) => setTimeout(resolve, poll));
    const state = await deps.tickets.getFile(ticket, index);
    if (state.state === 'done' || state.state === 'failed') {
      return { tenantId, file, answer: answerFor(state, deps.relayBaseUrl, file.name) as StagedAnswer };
    }
  }
  return { tenantId, file, answer: { status: 202, body: { status: 'relaying', statusUrl: statusUrl(deps.relayBaseUrl, file.name) } } };
}

/** `GET /uploads/status?name=`: 202 while relaying, then the final answer, for as long as the ledger keeps it. */
export async function readUploadStatus(
  request: { authorization: string | undefined; name: string | undefined },
  deps: TicketDeps & { relayBaseUrl: string },
): Promise<{ tenantId: string; answer: StagedAnswer }> {
  const { ticket, tenantId } = await verifyTicket(request.authorization, deps);
  const { index, file } = findStagedFile(ticket, request.name);
  const answer = answerFor(await deps.tickets.getFile(ticket, index), deps.relayBaseUrl, file.name);
  if (!answer) throw new AppError(404, 'not_started', 'This file has not been completed yet: call /uploads/complete first.');
  return { tenantId, answer };
}

export interface StagedRelayDeps {
  tickets: TicketStore;
  staging: StagingBucket;
  relay: FileRelay;
}

/**
 * The staged-relay function's work: stream the object from S3 into Confluence
 * (a fresh GET per attempt, constant memory), record the result or the
 * failure, and delete the object whatever happened.
 */
export async function runStagedRelay(
  job: StagedRelayJob,
  deps: StagedRelayDeps,
  workerId: string = randomUUID(),
): Promise<{ result?: AttachmentResult; failure?: RecordedFailure; bytes: number; duplicate?: boolean }> {
  const { ticket, tenant } = await deps.tickets.getWithTenant(job.tenantId, job.ticketHash);
  const file = ticket?.files[job.fileIndex];
  if (!ticket || !file?.stagingKey) return { bytes: 0 };
  // A second delivery of the same event (or a stale one) leaves the file, and its object, to the worker that has it.
  if (!(await deps.tickets.startWork(ticket, job.fileIndex, workerId))) return { bytes: 0, duplicate: true };
  const key = file.stagingKey;
  let deleted = false;
  // The object goes as soon as Confluence has it (or has refused it), alongside the ledger write.
  const deleteObject = async () => {
    deleted = true;
    await deps.staging.delete(key);
  };
  try {
    if (!tenant && !ticket.forge) {
      const failure = { status: 401, code: 'unauthorized', message: 'The app was uninstalled.' };
      await Promise.all([deps.tickets.failFile(ticket, job.fileIndex, failure), deleteObject()]);
      return { failure, bytes: 0 };
    }
    let result: AttachmentResult;
    try {
      result = await deps.relay(tenant, ticket, file, async (consume) => consume(await deps.staging.open(key)));
    } catch (error) {
      // relayFile already looked the attachment up after any ambiguous failure,
      // so what is left is a failure to report.
      const failure = recordableFailure(error);
      await Promise.all([deps.tickets.failFile(ticket, job.fileIndex, failure), deleteObject()]);
      return { failure, bytes: 0 };
    }
    await Promise.all([deps.tickets.completeFile(ticket, job.fileIndex, result), deleteObject()]);
    return { result, bytes: file.size };
  } finally {
    if (!deleted) await deps.staging.delete(key);
  }
}
