import type { UploadError } from './errors';
import type { XhrLike } from './http';

/** A file as declared on a ticket (relay contract, "Tickets"). */
export interface FileDeclaration {
  name: string;
  size: number;
  type: string;
}

/** Body of `POST /tickets`. */
export interface TicketRequest {
  contentId: string;
  files: FileDeclaration[];
  comment?: string;
  minorEdit?: boolean;
}

export type UploadEntry =
  | { name: string; mode: 'direct'; url: string }
  | { name: string; mode: 'staged'; post: { url: string; fields: Record<string, string> }; completeUrl: string };

/** The `201` answer of `POST /tickets`. */
export interface TicketResponse {
  ticket: string;
  expiresAt: string;
  uploads: UploadEntry[];
}

/** One attachment as the relay reports it. */
export interface Attachment {
  name: string;
  id: string;
  title: string;
  mediaType: string;
  fileSize: number;
  version: number;
  downloadUrl: string;
  /** `created`, `versioned` or `renamed`. */
  outcome?: string;
}

export interface UploaderOptions {
  /** The Confluence page (or blog post) id the files are attached to. */
  contentId: string;
  /**
   * The relay's base URL (`POST {relayUrl}/tickets`). Needed unless
   * `requestTicket` is given; upload URLs come from the ticket itself.
   */
  relayUrl?: string;
  /** A Connect context JWT, e.g. `() => AP.context.getToken()`; sent as `Authorization: JWT <token>`. */
  getToken?: () => string | Promise<string>;
  /**
   * Gets a ticket some other way, e.g. from a Forge Custom UI through
   * `invokeRemote({path: '/tickets', method: 'POST', body})`. Throw an
   * UploadError to report the relay's error code.
   */
  requestTicket?: (request: TicketRequest) => Promise<TicketResponse>;
  /** Files transferred at the same time. @default 3 */
  concurrency?: number;
  /** Attachment comment for every file. */
  comment?: string;
  /** Suppress watchers' notifications. @default true (the relay's default) */
  minorEdit?: boolean;
  /** Automatic retries of one request on 429, 5xx or a lost connection. @default 4 */
  retries?: number;
  /** First backoff delay; doubles per retry, with jitter, unless `Retry-After` says otherwise. @default 500 */
  retryDelayMs?: number;
  /** Longest wait between retries; a longer `Retry-After` ends the upload with its error. @default 30000 */
  maxRetryDelayMs?: number;
  /** How often a staged file's status is asked while Confluence receives it. @default 1000 */
  pollIntervalMs?: number;
  /** Files per ticket (the relay's MAX_FILES_PER_TICKET). @default 20 */
  filesPerTicket?: number;
  /** Makes the XMLHttpRequest of each request (tests pass a stand-in). */
  createXhr?: () => XhrLike;
}

export type UploadState = 'queued' | 'uploading' | 'relaying' | 'done' | 'error' | 'cancelled';

export interface UploadTask {
  readonly id: number;
  readonly file: Blob;
  readonly name: string;
  readonly size: number;
  /**
   * `queued` (waiting for a ticket or a free slot), `uploading` (bytes
   * moving), `relaying` (all bytes sent, Confluence is receiving them), then
   * `done`, `error` or `cancelled`.
   */
  readonly state: UploadState;
  /** Bytes of the file sent so far. */
  readonly loaded: number;
  readonly mode?: 'direct' | 'staged';
  readonly attachment?: Attachment;
  readonly error?: UploadError;
  /** Stops the upload while it is queued or uploading; nothing is attached. No effect later. */
  cancel(): void;
  /** Starts a failed or cancelled upload again. */
  retry(): void;
  /** Resolves when the current attempt ends (done, error or cancelled); never rejects. */
  settled(): Promise<UploadTask>;
}

export interface UploaderEvents {
  /** A task was added or changed state. */
  state: { task: UploadTask };
  progress: { task: UploadTask; loaded: number; total: number };
  done: { task: UploadTask; attachment: Attachment };
  error: { task: UploadTask; error: UploadError };
}

export interface Uploader {
  /** Queues files and starts uploading them; one ticket covers many files. */
  add(files: Iterable<Blob & { name: string }> | ArrayLike<Blob & { name: string }>): UploadTask[];
  readonly tasks: readonly UploadTask[];
  on<K extends keyof UploaderEvents>(type: K, listener: (event: UploaderEvents[K]) => void): () => void;
  /** Cancels every task that can still be cancelled. */
  cancelAll(): void;
  /** Resolves when no task is queued or running. */
  idle(): Promise<void>;
}
