import type { Readable } from 'node:stream';
import { AppError, badRequest } from '../core/errors';
import { describeError, logger } from '../core/logger';
import { UpstreamError } from '../confluence/client';
import type { RelayFileOptions } from './relay-file';
import type { Tenant, TenantStore } from '../store/tenant-store';
import type { AttachmentResult, DeclaredFile, TicketRecord, TicketStore } from '../store/ticket-store';
import { verifyTicket } from '../tickets/verify-ticket';
import type { UploadLimits } from './limits';
import { parseMultipart, type MultipartLimits } from './multipart';

export interface DirectUploadRequest {
  authorization: string | undefined;
  contentType: string | undefined;
  /** A fresh stream of the request body each time it is called (the body is parsed twice). */
  body: () => Readable;
}

export interface DirectUploadDeps {
  limits: UploadLimits;
  tenants: TenantStore;
  tickets: TicketStore;
  nowSeconds: () => number;
  /** How long an in-flight claim is held before another invocation may take it over. */
  leaseSeconds: number;
  /** Relays one file (identity, conflict policy, retries); see relay-file.ts. */
  relay(tenant: Tenant | undefined, ticket: TicketRecord, file: DeclaredFile, open: RelayFileOptions['open']): Promise<AttachmentResult>;
}

export interface DirectUploadOutcome {
  tenantId: string;
  attachments: AttachmentResult[];
  bytesRelayed: number;
}

interface PlannedFile {
  index: number;
  declared: DeclaredFile;
  mimeType: string;
}

function multipartLimits(limits: UploadLimits): MultipartLimits {
  return {
    maxFiles: limits.maxFilesPerTicket,
    maxFileBytes: Math.min(limits.maxFileBytes, limits.directMaxBytes),
    maxFields: limits.maxFieldParts,
    maxFieldBytes: limits.maxCommentLength * 4,
  };
}

/**
 * Which declared file a part is. Browsers percent-encode `"` in a multipart
 * filename (WHATWG form encoding; CR and LF too, but tickets refuse those), so
 * `a "b".txt` arrives as `a %22b%22.txt`; both spellings match.
 */
export function findDeclared(files: readonly DeclaredFile[], filename: string): number {
  const exact = files.findIndex((file) => file.name === filename);
  return exact >= 0 ? exact : files.findIndex((file) => file.name.includes('"') && file.name.replace(/"/g, '%22') === filename);
}

/** Part types a browser may send for a file whose declared type it did not know. */
const GENERIC_TYPES = new Set(['application/octet-stream', '']);

/**
 * First pass over the body: parse it completely, discarding file bytes, and
 * check every part against the ticket before anything is sent to Confluence.
 * A malformed, truncated or dishonest request is therefore refused whole and
 * creates no attachment at all.
 */
async function planUpload(request: DirectUploadRequest, ticket: TicketRecord, limits: UploadLimits) {
  const planned: PlannedFile[] = [];
  const fields: { comment?: string; minorEdit?: boolean } = {};
  await parseMultipart(request.contentType, request.body(), multipartLimits(limits), {
    async onFile(info, stream) {
      if (info.fieldName !== 'file') throw badRequest('unexpected_part', 'File parts must be named "file".');
      const index = findDeclared(ticket.files, info.filename);
      if (index < 0) throw badRequest('undeclared_file', 'The request contains a file that is not on the ticket.');
      if (planned.some((file) => file.index === index)) throw badRequest('duplicate_file', 'A file appears twice in the request.');
      const declared = ticket.files[index];
      let size = 0;
      for await (const chunk of stream) size += (chunk as Buffer).length;
      if (size > declared.size) throw new AppError(413, 'larger_than_declared', 'A file is larger than declared on the ticket.');
      if (size !== declared.size) throw badRequest('size_mismatch', 'A file is smaller than declared on the ticket.');
      const mimeType = info.mimeType.toLowerCase();
      if (!GENERIC_TYPES.has(mimeType) && mimeType !== declared.type) {
        throw badRequest('type_mismatch', 'A file has another type than declared on the ticket.');
      }
      planned.push({ index, declared, mimeType });
    },
    onField(name, value, truncated) {
      if (truncated) throw badRequest('bad_request', 'A text part is too long.');
      if (name === 'comment') fields.comment = value;
      else if (name === 'minorEdit' && (value === 'true' || value === 'false')) fields.minorEdit = value === 'true';
      else throw badRequest('unexpected_part', `Unexpected part "${name}".`);
    },
  });
  if (planned.length === 0) throw badRequest('no_files', 'The request contains no file part.');
  return { planned, fields };
}

/**
 * Parses the body again and hands the one part for declared file `index` to
 * `consume` (the body is in memory, so a retry can read a file a second time).
 */
async function withFilePart<T>(
  request: DirectUploadRequest,
  limits: UploadLimits,
  index: number,
  files: readonly DeclaredFile[],
  consume: (body: Readable) => Promise<T>,
): Promise<T> {
  let outcome: { value: T } | undefined;
  await parseMultipart(request.contentType, request.body(), multipartLimits(limits), {
    async onFile(info, stream) {
      if (!outcome && findDeclared(files, info.filename) === index) outcome = { value: await consume(stream) };
    },
    onField() {},
  });
  if (!outcome) throw new AppError(500, 'internal_error', 'A planned file part was not found again.', { expose: false });
  return outcome.value;
}

/**
 * `POST /uploads`: verify the ticket, check the body against it, claim each
 * file in the ledger, then stream each file into Confluence. Files uploaded
 * before are answered from the ledger; a file in flight elsewhere is a 409.
 */
export async function relayDirectUpload(request: DirectUploadRequest, deps: DirectUploadDeps): Promise<DirectUploadOutcome> {
  const { ticket, tenant, tenantId } = await verifyTicket(request.authorization, deps);
  const { planned, fields } = await planUpload(request, ticket, deps.limits);

  // Claim every file first, so that a concurrent duplicate fails before any byte moves.
  const results = new Map<number, AttachmentResult>();
  const claimed: number[] = [];
  try {
    for (const file of planned) {
      const claim = await deps.tickets.claimFile(ticket, file.index, deps.leaseSeconds, deps.nowSeconds());
      if (claim.state === 'claimed') claimed.push(file.index);
      else if (claim.state === 'done') results.set(file.index, claim.result);
      else throw new AppError(409, 'already_uploaded', 'This file is being uploaded by another request.');
    }
  } catch (error) {
    // A conflict or a store failure half-way: the claims already taken are given back.
    await Promise.allSettled(claimed.map((index) => deps.tickets.releaseFile(ticket, index)));
    throw error;
  }

  const pending = new Set(claimed);
  let bytesRelayed = 0;
  try {
    for (const file of planned) {
      if (!pending.has(file.index)) continue;
      const declared = ticket.files[file.index];
      const withComment = { ...ticket, comment: fields.comment ?? ticket.comment, minorEdit: fields.minorEdit ?? ticket.minorEdit };
      let result: AttachmentResult;
      try {
        result = await deps.relay(tenant, withComment, declared, (consume) =>
          withFilePart(request, deps.limits, file.index, ticket.files, consume),
        );
      } catch (error) {
        // Only a failure that certainly created nothing frees the file for another try;
        // an ambiguous one keeps its claim until the lease runs out.
        pending.delete(file.index);
        if (!(error instanceof UpstreamError) || error.definite) await deps.tickets.releaseFile(ticket, file.index);
        throw error;
      }
      pending.delete(file.index);
      bytesRelayed += declared.size;
      results.set(file.index, result);
      try {
        await deps.tickets.completeFile(ticket, file.index, result);
      } catch (error) {
        // Confluence has the file: the browser must hear so, or it would send it
        // again. Without the result in the ledger the claim simply stays in flight
        // until its lease runs out, so a replay meanwhile is a 409, never a copy.
        logger.warn('ledger write failed after upload', { code: error instanceof AppError ? error.code : 'internal_error', error: describeError(error) });
      }
    }
  } finally {
    // Files never reached (an earlier file failed) are given back.
    await Promise.allSettled([...pending].map((index) => deps.tickets.releaseFile(ticket, index)));
  }

  const attachments = planned.map((file) => {
    const result = results.get(file.index);
    if (!result) throw new AppError(500, 'internal_error', 'A planned file was not uploaded.', { expose: false });
    return result;
  });
  return { tenantId, attachments, bytesRelayed };
}
