import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { AppError, badRequest } from '../core/errors';
import { describeError, logger } from '../core/logger';
import { UpstreamError } from '../confluence/client';
import { nextTurn, type FileRelay } from './relay-file';
import type { AttachmentResult, ClaimOutcome, DeclaredFile, TicketRecord, TicketStore } from '../store/ticket-store';
import { checkTicketEarly, superseded, type VerifiedTicket } from '../tickets/verify-ticket';
import type { UploadLimits } from './limits';
import { parseMultipart, type FilePartInfo, type MultipartLimits } from './multipart';

export interface DirectUploadRequest {
  authorization: string | undefined;
  contentType: string | undefined;
  /** A fresh stream of the request body each time it is called (a retry, or a multi-file body, reads it again). */
  body: () => Readable;
}

export interface DirectUploadDeps {
  limits: UploadLimits;
  tickets: TicketStore;
  nowSeconds: () => number;
  /** How long an in-flight claim is held before another invocation may take it over. */
  leaseSeconds: number;
  /** Relays one file (identity, conflict policy, retries); see relay-file.ts. */
  relay: FileRelay;
  /** Told how the ticket is being checked, as soon as that is known (for the access log). */
  onTicketCheck?(kind: 'store' | 'early'): void;
}

export interface DirectUploadOutcome {
  tenantId: string;
  attachments: AttachmentResult[];
  bytesRelayed: number;
  /** Whether the upload went through on the ticket's signed terms, started before the store had confirmed them. */
  early: boolean;
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

interface Fields {
  comment?: string;
  minorEdit?: boolean;
}

/** Checks a file part's name and type against the ticket; `taken` are the declared files already in the body. */
function checkFilePart(info: FilePartInfo, ticket: TicketRecord, taken: readonly PlannedFile[]): PlannedFile {
  if (info.fieldName !== 'file') throw badRequest('unexpected_part', 'File parts must be named "file".');
  const index = findDeclared(ticket.files, info.filename);
  if (index < 0) throw badRequest('undeclared_file', 'The request contains a file that is not on the ticket.');
  if (taken.some((file) => file.index === index)) throw badRequest('duplicate_file', 'A file appears twice in the request.');
  const declared = ticket.files[index];
  const mimeType = info.mimeType.toLowerCase();
  if (!GENERIC_TYPES.has(mimeType) && mimeType !== declared.type) {
    throw badRequest('type_mismatch', 'A file has another type than declared on the ticket.');
  }
  return { index, declared, mimeType };
}

function readField(fields: Fields, name: string, value: string, truncated: boolean): void {
  if (truncated) throw badRequest('bad_request', 'A text part is too long.');
  if (name === 'comment') fields.comment = value;
  else if (name === 'minorEdit' && (value === 'true' || value === 'false')) fields.minorEdit = value === 'true';
  else throw badRequest('unexpected_part', `Unexpected part "${name}".`);
}

/**
 * First pass over the body: parse it completely, discarding file bytes, and
 * check every part against the ticket before anything is sent to Confluence.
 * A malformed, truncated or dishonest request is therefore refused whole and
 * creates no attachment at all.
 */
async function planUpload(request: DirectUploadRequest, ticket: TicketRecord, limits: UploadLimits) {
  const planned: PlannedFile[] = [];
  const fields: Fields = {};
  await parseMultipart(request.contentType, request.body(), multipartLimits(limits), {
    async onFile(info, stream) {
      const file = checkFilePart(info, ticket, planned);
      let size = 0;
      for await (const chunk of stream) size += (chunk as Buffer).length;
      if (size > file.declared.size) throw new AppError(413, 'larger_than_declared', 'A file is larger than declared on the ticket.');
      if (size !== file.declared.size) throw badRequest('size_mismatch', 'A file is smaller than declared on the ticket.');
      planned.push(file);
    },
    onField(name, value, truncated) {
      readField(fields, name, value, truncated);
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
 *
 * A signed ticket of a tenant this instance knows (verify-ticket.ts
 * `checkTicketEarly`) lets the usual one-file upload start on the ticket's
 * own terms while the store confirms them: its last bytes wait for that
 * answer too, so a ticket the store refuses cuts the upload short and
 * Confluence stores nothing. If the store's records differ from the terms
 * (a reinstall changed the tenant's secret), the upload is redone on them.
 */
export async function relayDirectUpload(request: DirectUploadRequest, deps: DirectUploadDeps): Promise<DirectUploadOutcome> {
  const check = await checkTicketEarly(request.authorization, deps);
  deps.onTicketCheck?.(check.confirmed ? 'early' : 'store');
  let verified = check.verified;
  if (check.confirmed) {
    const attempt = await relayInOnePass(request, deps, verified, check.confirmed).then(
      (single) => ({ single }),
      (error: unknown) => ({ error }),
    );
    // Nothing is answered before the store has: its refusal is the answer.
    const confirmed = await check.confirmed;
    if (!superseded(verified, confirmed)) {
      if ('error' in attempt) throw attempt.error;
      if (attempt.single) return { tenantId: verified.tenantId, attachments: [attempt.single.result], bytesRelayed: attempt.single.bytesRelayed, early: true };
      // More than the one-pass path takes: the whole body is checked first, on the store's records.
      return { ...(await relayInTwoPasses(request, deps, confirmed)), early: false };
    }
    verified = confirmed;
  }
  const single = await relayInOnePass(request, deps, verified);
  if (single) return { tenantId: verified.tenantId, attachments: [single.result], bytesRelayed: single.bytesRelayed, early: false };
  return { ...(await relayInTwoPasses(request, deps, verified)), early: false };
}

/** Why an early upload was given up: the store's records differ from the ticket's terms it ran on. */
class Superseded extends Error {}

/** Why the one-pass path gave a request up to the two-pass one: it has more than one file, or text parts after its file. */
class NotOnePart extends Error {}

/** Settles with the first reason given (or a rejection), or with undefined once every one has said none. */
function firstRefusal(reasons: Promise<unknown>[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let pending = reasons.length;
    for (const reason of reasons) {
      reason.then((value) => {
        if (value !== undefined) resolve(value);
        else if (--pending === 0) resolve(undefined);
      }, reject);
    }
  });
}

/** The ledger's answer when the file was not this request's to upload. */
class ClaimRefused extends Error {
  constructor(readonly claim: Exclude<ClaimOutcome, { state: 'claimed' }>) {
    super(`claim refused: ${claim.state}`);
  }
}

/**
 * The usual request — one file, text parts (if any) before it — in a single
 * pass: the file streams into Confluence as soon as its part begins, while
 * the ledger claim and the name look-up run alongside; its last bytes wait
 * until the whole body has been read and checked and the claim is ours. Any
 * "no" before then cuts the outbound request short, so Confluence stores
 * nothing. A body with more than that goes to the two-pass path (undefined).
 */
async function relayInOnePass(
  request: DirectUploadRequest,
  deps: DirectUploadDeps,
  verified: VerifiedTicket,
  /** The store's answer, when `verified` was taken from a signed ticket before it (see relayDirectUpload). */
  confirmed?: Promise<VerifiedTicket>,
): Promise<{ result: AttachmentResult; bytesRelayed: number } | undefined> {
  const { ticket, tenant } = verified;
  /** Undefined once the store agrees with the terms used (at once without `confirmed`); rejects with its 401. */
  const disagreement: Promise<Superseded | undefined> = confirmed
    ? confirmed.then((stored) => (superseded(verified, stored) ? new Superseded() : undefined))
    : Promise.resolve(undefined);
  disagreement.catch(() => undefined);
  const fields: Fields = {};
  let file: PlannedFile | undefined;
  let more = false;
  let claim: Promise<ClaimOutcome> | undefined;
  let relaying: Promise<AttachmentResult> | undefined;

  const parsing: Promise<void> = parseMultipart(request.contentType, request.body(), multipartLimits(deps.limits), {
    async onFile(info, stream) {
      if (file) {
        more = true;
        return;
      }
      const planned = checkFilePart(info, ticket, []);
      file = planned;
      // Taken a moment later, once the upload below has its first bytes on the wire.
      claim = nextTurn().then(() => deps.tickets.claimFile(ticket, planned.index, deps.leaseSeconds, deps.nowSeconds()));
      claim.catch(() => undefined);
      let live: Readable | undefined = stream;
      const withFields = { ...ticket, comment: fields.comment ?? ticket.comment, minorEdit: fields.minorEdit ?? ticket.minorEdit };
      relaying = deps.relay(
        tenant,
        withFields,
        planned.declared,
        (consume) => {
          // The first attempt reads the part as it is parsed; a retry parses the body again.
          if (!live) return withFilePart(request, deps.limits, planned.index, ticket.files, consume);
          const body = live;
          live = undefined;
          return consume(body);
        },
        async () => {
          await parsing;
          if (more) throw new NotOnePart();
          const differs = await disagreement;
          if (differs) throw differs;
          const outcome = await claim!;
          if (outcome.state !== 'claimed') throw new ClaimRefused(outcome);
        },
        // A replay (or a double click), or a ticket the store refuses, is known
        // as soon as the ledger or the store answers: stop sending then.
        firstRefusal([claim.then((outcome) => (outcome.state === 'claimed' ? undefined : new ClaimRefused(outcome))), disagreement]),
      );
      relaying.catch(() => undefined);
      // The parse goes on once the part has been read, or once it never will be.
      const settled = relaying.then(
        () => undefined,
        () => undefined,
      );
      await Promise.race([finished(stream).catch(() => undefined), settled]);
    },
    onField(name, value, truncated) {
      // After the file its envelope (comment, minorEdit) has gone out already.
      if (file) more = true;
      readField(fields, name, value, truncated);
    },
  });

  let parseError: { error: unknown } | undefined;
  await parsing.catch((error: unknown) => (parseError = { error }));
  if (!file || !relaying || !claim) {
    if (parseError) throw parseError.error;
    throw badRequest('no_files', 'The request contains no file part.');
  }
  const { index, declared } = file;
  const relayed = await relaying.then(
    (result) => ({ result }),
    (error: unknown) => ({ error }),
  );
  const claimed = await claim.catch(() => undefined);

  if ('result' in relayed) {
    await recordCompletion(deps.tickets, ticket, index, relayed.result);
    return { result: relayed.result, bytesRelayed: declared.size };
  }
  const { error } = relayed;
  // Only a failure that certainly created nothing frees the file for another try;
  // an ambiguous one keeps its claim until the lease runs out.
  if (claimed?.state === 'claimed' && (!(error instanceof UpstreamError) || error.definite)) await deps.tickets.releaseFile(ticket, index);
  if (error instanceof NotOnePart) return undefined;
  if (error instanceof ClaimRefused) {
    if (error.claim.state === 'done') return { result: error.claim.result, bytesRelayed: 0 };
    throw new AppError(409, 'already_uploaded', 'This file is being uploaded by another request.');
  }
  // A body that is broken as well as refused upstream is reported as broken, as the two-pass path would.
  if (parseError && error instanceof UpstreamError) throw parseError.error;
  throw error;
}

/**
 * Confluence has the file: the browser must hear so, or it would send it
 * again. Without the result in the ledger the claim simply stays in flight
 * until its lease runs out, so a replay meanwhile is a 409, never a copy.
 */
async function recordCompletion(tickets: TicketStore, ticket: TicketRecord, index: number, result: AttachmentResult): Promise<void> {
  try {
    await tickets.completeFile(ticket, index, result);
  } catch (error) {
    logger.warn('ledger write failed after upload', { code: error instanceof AppError ? error.code : 'internal_error', error: describeError(error) });
  }
}

/**
 * Any other body: check it whole first (planUpload), claim each file, then
 * stream each file into Confluence, parsing the body again for each.
 */
async function relayInTwoPasses(request: DirectUploadRequest, deps: DirectUploadDeps, { ticket, tenant, tenantId }: VerifiedTicket): Promise<Omit<DirectUploadOutcome, 'early'>> {
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
      await recordCompletion(deps.tickets, ticket, file.index, result);
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
