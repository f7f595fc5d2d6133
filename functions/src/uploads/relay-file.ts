import type { Readable } from 'node:stream';
import type { NameConflictPolicy } from '../core/config';
import { AppError } from '../core/errors';
import { UpstreamError, type ConfluenceTarget, type UploadOptions } from '../confluence/client';
import { contentExists, findAttachment, freeName, type ExistingAttachment } from '../confluence/attachments';
import type { AttachmentResult, DeclaredFile, TicketRecord } from '../store/ticket-store';
import type { Tenant } from '../store/tenant-store';

/** Who the upload runs as: the user (a bearer token that may need renewing) or the app. */
export interface UploadIdentity {
  target(): Promise<ConfluenceTarget>;
  /** Drops a token Confluence refused and gets a new one; absent for the app, whose JWT is minted per call. */
  renew?(): Promise<void>;
}

export interface RelayFileOptions {
  identity: UploadIdentity;
  /** The app's own access, to tell "page gone" from "file over the site's limit". */
  appTarget: ConfluenceTarget;
  contentId: string;
  file: DeclaredFile;
  comment?: string;
  minorEdit: boolean;
  policy: NameConflictPolicy;
  /**
   * Awaited before each attempt's last bytes go out; a rejection aborts the
   * attempt with the request incomplete, so Confluence creates nothing, and
   * fails the file with that reason.
   */
  gate?(): Promise<void>;
  /**
   * Settles with a reason not to send the file, as soon as one is known (or
   * with undefined): the attempt streaming meanwhile is cut off at once
   * rather than at its last bytes, and no further attempt is made.
   */
  refusal?: Promise<unknown>;
  /** Opens the file's bytes (again, for a retry) and hands them to `consume`. */
  open<T>(consume: (body: Readable) => Promise<T>): Promise<T>;
  upload(options: UploadOptions): Promise<AttachmentResult>;
  /** Epoch ms by which the relay must have answered (API Gateway cuts at 30 s). */
  deadlineMs: number;
  uploadTimeoutMs: number;
  callTimeoutMs: number;
  onSiteLimitExceeded?(bytes: number): Promise<void>;
  sleep?(ms: number): Promise<void>;
  random?(): number;
}

/**
 * Relays one declared file of a ticket with the tenant's upload identity
 * (built once per invocation in deps.ts `fileRelay`).
 */
export type FileRelay = (
  tenant: Tenant | undefined,
  ticket: TicketRecord,
  file: DeclaredFile,
  open: RelayFileOptions['open'],
  gate?: RelayFileOptions['gate'],
  refusal?: RelayFileOptions['refusal'],
) => Promise<AttachmentResult>;

export const MAX_ATTEMPTS = 4;
const BACKOFF_BASE_MS = 250;
const BACKOFF_CAP_MS = 4_000;
/** Resolves on the event loop's next turn (after pending I/O callbacks). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A retry is only started if at least this much time is left for it. */
const MIN_ATTEMPT_MS = 1_000;

/** Exponential backoff with full jitter (0 … min(cap, base·2^attempt)). */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt));
}

function nameConflict(): AppError {
  return new AppError(409, 'name_conflict', 'The page already has an attachment with this name.');
}

/** Whether what is on the page now is the result of our upload (and not what was there before). */
function tookEffect(before: ExistingAttachment | undefined, after: ExistingAttachment | undefined, size: number): boolean {
  if (!after || after.fileSize !== size) return false;
  return !before || after.id !== before.id || after.version > before.version;
}

function isRetryable(error: UpstreamError): boolean {
  // A refusal (4xx) stays a refusal; rate limits, unavailability, 5xx and
  // network failures may pass.
  if (error.upstreamStatus === 429 || error.upstreamStatus === 503) return true;
  if (error.upstreamStatus !== undefined) return error.upstreamStatus >= 500;
  return true;
}

/**
 * Relays one file into Confluence exactly once: applies the name-conflict
 * policy, retries rate limits and transient failures within the time left,
 * and after an ambiguous failure (the request may have been stored before the
 * answer was lost) looks the attachment up instead of sending it twice.
 */
export async function relayFile(options: RelayFileOptions): Promise<AttachmentResult> {
  const { file, contentId } = options;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const remaining = () => options.deadlineMs - Date.now();
  const callTimeout = () => Math.max(1, Math.min(options.callTimeoutMs, remaining()));

  let target = await options.identity.target();
  let renewal: Promise<void> | undefined;
  /**
   * Drops a token Confluence refused and takes a new one, once per file: the
   * look-up and the first attempt run side by side and may both be refused.
   * False when there is nothing (more) to renew.
   */
  async function renewed(refused: ConfluenceTarget): Promise<boolean> {
    const { renew } = options.identity;
    if (!renew) return false;
    const first = !renewal;
    renewal ??= (async () => {
      await renew();
      target = await options.identity.target();
    })();
    await renewal;
    return first || target !== refused;
  }
  /** Runs a call as the upload identity, renewing a refused user token once. */
  async function asIdentity<T>(call: (current: ConfluenceTarget) => Promise<T>): Promise<T> {
    const used = target;
    try {
      return await call(used);
    } catch (error) {
      if (!(error instanceof UpstreamError) || error.upstreamStatus !== 401 || !(await renewed(used))) throw error;
      return call(target);
    }
  }

  let title = file.name;
  // What the page holds under the name before our upload: for `fail` and
  // `version` it is looked up while the first attempt streams, whose last
  // bytes wait for the answer (so Confluence cannot have our file yet when it
  // is given), and it is sent a turn later, once the upload has its first
  // bytes on the wire; `rename` must know the free name before it starts.
  const lookup = (options.policy === 'rename' ? Promise.resolve() : nextTurn()).then(() =>
    asIdentity((current) => findAttachment(current, contentId, title, callTimeout())),
  );
  lookup.catch(() => undefined);
  let before: ExistingAttachment | undefined;
  let outcome: AttachmentResult['outcome'] = 'created';
  if (options.policy === 'rename') {
    if (await lookup) {
      title = await asIdentity((current) => freeName(current, contentId, file.name, callTimeout()));
      outcome = 'renamed';
    }
  }
  let nameSettled = options.policy === 'rename';
  async function settleName(): Promise<void> {
    if (nameSettled) return;
    before = await lookup;
    if (before && options.policy === 'fail') throw nameConflict();
    if (before) outcome = 'versioned';
    nameSettled = true;
  }
  const method = options.policy === 'version' ? 'PUT' : 'POST';

  // A "no" known before an attempt's last bytes (a name conflict under `fail`,
  // the caller's refusal) stops the bytes flowing at once, not at the end.
  let stopped: { reason: unknown } | undefined;
  /** Read through a function: TypeScript cannot see the callbacks that set it. */
  const stoppedBy = (): { reason: unknown } | undefined => stopped;
  let attemptAbort: AbortController | undefined;
  const stop = (reason: unknown) => {
    stopped ??= { reason };
    attemptAbort?.abort(reason);
  };
  if (options.policy === 'fail') lookup.then((found) => found && stop(nameConflict()), () => undefined);
  options.refusal?.then(
    (reason) => reason !== undefined && stop(reason),
    (error: unknown) => stop(error),
  );

  for (let attempt = 1; ; attempt += 1) {
    const stopNow = stoppedBy();
    if (stopNow) throw stopNow.reason;
    const used = target;
    /** Why this attempt was held back before its last byte (nothing reached Confluence whole). */
    let held: { reason: unknown } | undefined;
    attemptAbort = new AbortController();
    const { signal } = attemptAbort;
    try {
      const result = await options.open((body) =>
        options.upload({
          target: used,
          contentId,
          file: { ...file, name: title },
          body,
          comment: options.comment,
          minorEdit: options.minorEdit,
          method,
          timeoutMs: Math.max(1, Math.min(options.uploadTimeoutMs, remaining())),
          signal,
          async beforeEnd() {
            try {
              await settleName();
              await options.gate?.();
            } catch (reason) {
              held = { reason };
              throw reason;
            }
          },
        }),
      );
      // Confluence may answer before it has read the whole body; the name must be settled all the same.
      await settleName();
      return { ...result, name: file.name, outcome };
    } catch (error) {
      const stoppedNow = stoppedBy();
      if (stoppedNow) throw stoppedNow.reason;
      if (held) throw held.reason;
      if (!(error instanceof UpstreamError)) throw error;
      // An attempt refused before its last byte still needs the name settled to be judged.
      await settleName();

      if (error.upstreamStatus === 404) {
        // Confluence answers 404 both for a page that is gone and for a file over the site's limit.
        if (await contentExists(options.appTarget, contentId, callTimeout())) {
          await options.onSiteLimitExceeded?.(file.size);
          throw new AppError(413, 'exceeds_site_limit', "The file is larger than this site's attachment limit.");
        }
        throw error;
      }
      if (error.upstreamStatus === 401 && (await renewed(used))) continue;
      if (error.code === 'name_conflict' && options.policy === 'rename') {
        // Someone took the free name in the meantime: take the next one.
        title = await asIdentity((current) => freeName(current, contentId, file.name, callTimeout()));
        continue;
      }
      if (!error.definite) {
        const after = await asIdentity((current) => findAttachment(current, contentId, title, callTimeout()));
        if (after && tookEffect(before, after, file.size)) return { ...after.result, name: file.name, outcome };
      }
      if (!isRetryable(error) || attempt >= MAX_ATTEMPTS) throw error;
      const waitMs = error.retryAfterMs ?? backoffMs(attempt, options.random);
      if (waitMs + MIN_ATTEMPT_MS > remaining()) throw error;
      await sleep(waitMs);
    }
  }
}
