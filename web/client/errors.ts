/**
 * The one error type of the client library. `code` is the relay contract's
 * snake_case code (`forbidden`, `file_too_large`, `rate_limited`, ...) or one
 * of the client's own (`network`, `aborted`, `expired`, `bad_response`,
 * `staging_failed`); `message` is a sentence fit to show a person.
 */
export class UploadError extends Error {
  readonly code: string;
  /** HTTP status of the answer that failed; 0 when there was none (network, abort). */
  readonly status: number;
  /** How long the server asked to wait (Retry-After), in milliseconds. */
  readonly retryAfterMs?: number;
  /** The relay's request id, for support. */
  readonly requestId?: string;
  /** The server's own message, when it sent one. */
  readonly detail?: string;

  constructor(code: string, options: { status?: number; retryAfterMs?: number; requestId?: string; detail?: string; message?: string } = {}) {
    super(options.message ?? messageFor(code, options.detail));
    this.name = 'UploadError';
    this.code = code;
    this.status = options.status ?? 0;
    this.retryAfterMs = options.retryAfterMs;
    this.requestId = options.requestId;
    this.detail = options.detail;
  }
}

/**
 * Worth trying again by itself: rate limits, the relay or Confluence busy or
 * failing (5xx), a lost connection, or the same file still in flight
 * elsewhere (the relay's ledger answers a repeat with the first result, so
 * retrying never attaches a file twice).
 */
export function isRetryable(error: UploadError): boolean {
  return error.code === 'network' || error.code === 'already_uploaded' || error.status === 429 || (error.status >= 500 && error.status !== 501);
}

const MESSAGES: Record<string, string> = {
  forbidden: "You don't have permission to add files to this page.",
  file_too_large: 'This file is larger than the upload limit.',
  exceeds_site_limit: "This file is larger than this Confluence site's attachment limit.",
  larger_than_declared: 'The file changed while it was being uploaded. Try again.',
  size_mismatch: 'The file changed while it was being uploaded. Try again.',
  rate_limited: 'Confluence is busy right now. Try again in a minute.',
  upstream_unavailable: 'Confluence is busy right now. Try again in a minute.',
  unauthorized: 'Your session has expired. Reload the page and try again.',
  expired: 'Your session has expired. Reload the page and try again.',
  network: 'The connection was lost. Check your network and try again.',
  aborted: 'Cancelled.',
  content_not_found: 'This page no longer exists.',
  name_conflict: 'A file with this name is already attached to this page.',
  bad_file_name: 'This file name cannot be used in Confluence. Rename the file and try again.',
  too_many_files: 'Too many files at once. Upload fewer files at a time.',
  upstream_timeout: 'Confluence did not answer in time. Try again.',
  upstream_error: 'Confluence could not store the file. Try again.',
  staging_failed: 'The file could not be uploaded. Try again.',
};

/** A sentence for a code; the server's own sentence for codes the library does not know. */
export function messageFor(code: string, detail?: string): string {
  return MESSAGES[code] ?? detail ?? 'The upload failed. Try again.';
}
