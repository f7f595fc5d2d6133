import { UploadError, isRetryable } from './errors';
import { errorFromResponse, parseJson, send, type HttpRequest, type HttpResponse, type XhrLike } from './http';
import type {
  Attachment,
  TicketRequest,
  TicketResponse,
  UploadEntry,
  UploadState,
  UploadTask,
  Uploader,
  UploaderEvents,
  UploaderOptions,
} from './types';

interface Ticket {
  token: string;
  expiresAtMs: number;
  entries: Map<string, UploadEntry>;
}

interface Task extends UploadTask {
  state: UploadState;
  loaded: number;
  mode?: 'direct' | 'staged';
  attachment?: Attachment;
  error?: UploadError;
  type: string;
  ticket?: Ticket;
  /** Bumped by retry(), so a late batch ticket cannot start an attempt twice. */
  attempt: number;
  controller: AbortController;
  waiters: Array<(task: UploadTask) => void>;
}

/** A ticket this close to expiry is replaced before an upload starts with it. */
const TICKET_MARGIN_MS = 30_000;
/** Ticket, complete and status calls: the relay answers within API Gateway's 30 s. */
const CALL_TIMEOUT_MS = 60_000;
/** Ticket errors that concern one of the files, not the batch: each file then asks alone. */
const FILE_CODES = new Set(['file_too_large', 'exceeds_site_limit', 'bad_file_name', 'duplicate_file', 'too_many_files']);
const FINAL: readonly UploadState[] = ['done', 'error', 'cancelled'];

/**
 * Uploads files into a Confluence page through the relay: asks for a ticket
 * (one per batch), then sends each file the way the ticket says — `direct`
 * as a multipart POST to the relay, `staged` as a presigned POST to the
 * staging bucket followed by `/uploads/complete` and status polling — with
 * per-file progress, a concurrency limit, cancel, and retries with backoff
 * on 429/5xx that honour `Retry-After`.
 */
export function createUploader(options: UploaderOptions): Uploader {
  const concurrency = Math.max(1, options.concurrency ?? 3);
  const retries = options.retries ?? 4;
  const retryDelayMs = options.retryDelayMs ?? 500;
  const maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  const filesPerTicket = Math.max(1, options.filesPerTicket ?? 20);
  const createXhr = options.createXhr ?? (() => new XMLHttpRequest() as XhrLike);
  const requestTicket = options.requestTicket ?? relayTicket;
  if (!options.requestTicket && !(options.relayUrl && options.getToken)) {
    throw new TypeError('createUploader needs relayUrl and getToken, or requestTicket');
  }

  const tasks: Task[] = [];
  const listeners = new Map<keyof UploaderEvents, Set<(event: unknown) => void>>();
  let nextId = 1;
  let running = 0;
  const waiting: Array<{ task: Task; start: () => void }> = [];

  function emit<K extends keyof UploaderEvents>(type: K, event: UploaderEvents[K]): void {
    for (const listener of listeners.get(type) ?? []) listener(event);
  }

  function setState(task: Task, state: UploadState): void {
    task.state = state;
    emit('state', { task });
    if (FINAL.includes(state)) for (const resolve of task.waiters.splice(0)) resolve(task);
  }

  // ---- HTTP with retries ----

  function sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new UploadError('aborted'));
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(new UploadError('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async function withRetries<T>(operation: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await operation();
      } catch (thrown) {
        const error = asUploadError(thrown);
        const waitMs = error.retryAfterMs ?? Math.min(maxRetryDelayMs, retryDelayMs * 2 ** attempt) * (0.5 + Math.random() / 2);
        if (!isRetryable(error) || attempt >= retries || waitMs > maxRetryDelayMs) throw error;
        await sleep(waitMs, signal);
      }
    }
  }

  /** Sends a request and returns the answer if its status is one of `ok`, else throws its error. */
  async function call(request: HttpRequest, ok: readonly number[] = [200]): Promise<HttpResponse> {
    const response = await send(createXhr, { timeoutMs: CALL_TIMEOUT_MS, ...request });
    if (!ok.includes(response.status)) throw errorFromResponse(response);
    return response;
  }

  function json(response: HttpResponse): Record<string, unknown> {
    const body = parseJson(response.text);
    if (!body) throw new UploadError('bad_response', { status: response.status });
    return body;
  }

  // ---- tickets ----

  /** The default ticket source: `POST {relayUrl}/tickets` with the Connect context JWT, a fresh one after a 401. */
  async function relayTicket(request: TicketRequest): Promise<TicketResponse> {
    const url = `${options.relayUrl!.replace(/\/+$/, '')}/tickets`;
    const ask = async () =>
      call(
        {
          method: 'POST',
          url,
          headers: { authorization: `JWT ${await options.getToken!()}`, 'content-type': 'application/json' },
          body: JSON.stringify(request),
        },
        [200, 201],
      );
    let response: HttpResponse;
    try {
      response = await ask();
    } catch (error) {
      // Context tokens are short-lived: one more try with a fresh one.
      if (!(error instanceof UploadError && error.status === 401)) throw error;
      response = await ask();
    }
    return json(response) as unknown as TicketResponse;
  }

  async function fetchTicket(batch: readonly Task[], signal?: AbortSignal): Promise<Ticket> {
    const request: TicketRequest = {
      contentId: options.contentId,
      files: batch.map((task) => ({ name: task.name, size: task.size, type: task.type })),
      ...(options.comment !== undefined ? { comment: options.comment } : {}),
      ...(options.minorEdit !== undefined ? { minorEdit: options.minorEdit } : {}),
    };
    const answer = await withRetries(() => requestTicket(request), signal);
    if (typeof answer?.ticket !== 'string' || !Array.isArray(answer.uploads)) throw new UploadError('bad_response');
    return {
      token: answer.ticket,
      expiresAtMs: Date.parse(answer.expiresAt) || Date.now() + 60_000,
      entries: new Map(answer.uploads.map((entry) => [entry.name, entry])),
    };
  }

  /** One ticket for a batch; when the relay refuses it because of one file, each file asks alone. */
  async function ticketBatch(batch: readonly Task[]): Promise<void> {
    const attempts = batch.map((task) => task.attempt);
    const current = () => batch.filter((task, i) => task.attempt === attempts[i] && task.state === 'queued');
    try {
      const ticket = await fetchTicket(batch);
      for (const task of current()) {
        task.ticket = ticket;
        void run(task);
      }
    } catch (thrown) {
      const error = asUploadError(thrown);
      for (const task of current()) {
        if (batch.length > 1 && FILE_CODES.has(error.code)) void run(task);
        else fail(task, error);
      }
    }
  }

  // ---- transfers ----

  function progress(task: Task, loaded: number, total: number): void {
    // `total` counts the multipart envelope too: report the file's share.
    task.loaded = Math.min(task.size, Math.round((loaded / Math.max(1, total)) * task.size));
    emit('progress', { task, loaded: task.loaded, total: task.size });
  }

  function transferRequest(task: Task, url: string, form: FormData, headers: Record<string, string> = {}): HttpRequest {
    return {
      method: 'POST',
      url,
      headers,
      body: form,
      signal: task.controller.signal,
      onUploadProgress: (loaded, total) => progress(task, loaded, total),
      onUploaded: () => {
        task.loaded = task.size;
        emit('progress', { task, loaded: task.size, total: task.size });
        setState(task, 'relaying');
      },
    };
  }

  function attachmentOf(task: Task, body: Record<string, unknown>): Attachment {
    const attachments = body.attachments as Attachment[] | undefined;
    const attachment = attachments?.find((a) => a.name === task.name) ?? attachments?.[0];
    if (!attachment) throw new UploadError('bad_response');
    return attachment;
  }

  async function direct(task: Task, ticket: Ticket, entry: Extract<UploadEntry, { mode: 'direct' }>): Promise<Attachment> {
    const response = await withRetries(() => {
      setState(task, 'uploading');
      const form = new FormData();
      form.append('file', task.file, task.name);
      return call(transferRequest(task, entry.url, form, { authorization: `Bearer ${ticket.token}` }));
    }, task.controller.signal);
    return attachmentOf(task, json(response));
  }

  async function staged(task: Task, ticket: Ticket, entry: Extract<UploadEntry, { mode: 'staged' }>): Promise<Attachment> {
    const signal = task.controller.signal;
    await withRetries(async () => {
      setState(task, 'uploading');
      const form = new FormData();
      // S3 reads the policy fields first; the file must be the last part.
      for (const [name, value] of Object.entries(entry.post.fields)) form.append(name, value);
      form.append('file', task.file, task.name);
      const response = await send(createXhr, transferRequest(task, entry.post.url, form));
      if (response.status >= 300) throw stagingError(response);
    }, signal);
    const auth = { authorization: `Bearer ${ticket.token}` };
    let response = await withRetries(
      () =>
        call(
          { method: 'POST', url: entry.completeUrl, headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: task.name }) },
          [200, 202],
        ),
      signal,
    );
    // 202: Confluence is still receiving the file; the status URL answers 202 until it is done.
    while (response.status === 202) {
      const statusUrl = json(response).statusUrl;
      if (typeof statusUrl !== 'string') throw new UploadError('bad_response', { status: 202 });
      await sleep(pollIntervalMs, signal);
      response = await withRetries(() => call({ method: 'GET', url: statusUrl, headers: auth }, [200, 202]), signal);
    }
    return attachmentOf(task, json(response));
  }

  async function transfer(task: Task): Promise<Attachment> {
    if (task.ticket && task.ticket.expiresAtMs - Date.now() < TICKET_MARGIN_MS) task.ticket = undefined;
    task.ticket ??= await fetchTicket([task], task.controller.signal);
    const ticket = task.ticket;
    const entry = ticket.entries.get(task.name);
    if (!entry) throw new UploadError('bad_response');
    task.mode = entry.mode;
    return entry.mode === 'direct' ? direct(task, ticket, entry) : staged(task, ticket, entry);
  }

  // ---- scheduling ----

  function slot(task: Task): Promise<void> {
    if (running < concurrency) {
      running += 1;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter = { task, start: resolve };
      waiting.push(waiter);
      task.controller.signal.addEventListener('abort', () => {
        const index = waiting.indexOf(waiter);
        if (index >= 0) waiting.splice(index, 1);
        reject(new UploadError('aborted'));
      });
    });
  }

  function releaseSlot(): void {
    const next = waiting.shift();
    if (next) next.start();
    else running -= 1;
  }

  async function run(task: Task): Promise<void> {
    const attempt = task.attempt;
    try {
      await slot(task);
    } catch {
      return; // cancelled while waiting
    }
    try {
      let attachment: Attachment;
      try {
        attachment = await transfer(task);
      } catch (thrown) {
        // The upload found its ticket expired (a long queue, a clock off): one fresh ticket for this file, then once more.
        const expired = thrown instanceof UploadError && (thrown.code === 'unauthorized' || thrown.code === 'expired');
        if (!expired || !task.ticket) throw thrown;
        task.ticket = undefined;
        attachment = await transfer(task);
      }
      if (attempt !== task.attempt) return;
      task.attachment = attachment;
      task.loaded = task.size;
      setState(task, 'done');
      emit('done', { task, attachment });
    } catch (thrown) {
      if (attempt !== task.attempt || task.state === 'cancelled') return;
      fail(task, asUploadError(thrown));
    } finally {
      releaseSlot();
    }
  }

  function fail(task: Task, error: UploadError): void {
    task.error = error;
    if (error.code === 'aborted') return setState(task, 'cancelled');
    setState(task, 'error');
    emit('error', { task, error });
  }

  function createTask(file: Blob & { name: string }): Task {
    const task: Task = {
      id: nextId++,
      file,
      name: file.name,
      size: file.size,
      type: file.type.split(';')[0].trim().toLowerCase() || 'application/octet-stream',
      state: 'queued',
      loaded: 0,
      attempt: 0,
      controller: new AbortController(),
      waiters: [],
      cancel() {
        if (task.state !== 'queued' && task.state !== 'uploading') return;
        task.controller.abort();
        fail(task, new UploadError('aborted'));
      },
      retry() {
        if (task.state !== 'error' && task.state !== 'cancelled') return;
        task.attempt += 1;
        task.controller = new AbortController();
        task.error = undefined;
        task.loaded = 0;
        setState(task, 'queued');
        void run(task);
      },
      settled() {
        return FINAL.includes(task.state) ? Promise.resolve(task) : new Promise((resolve) => task.waiters.push(resolve));
      },
    };
    return task;
  }

  return {
    tasks,
    add(files) {
      const added = Array.from(files, createTask);
      tasks.push(...added);
      for (const task of added) emit('state', { task });
      // Batches of at most filesPerTicket, each name once per ticket (the relay refuses duplicates).
      const batches: Task[][] = [];
      for (const task of added) {
        let batch = batches.find((b) => b.length < filesPerTicket && !b.some((other) => other.name === task.name));
        if (!batch) batches.push((batch = []));
        batch.push(task);
      }
      for (const batch of batches) void ticketBatch(batch);
      return added;
    },
    on(type, listener) {
      const set = listeners.get(type) ?? new Set();
      listeners.set(type, set);
      const entry = listener as (event: unknown) => void;
      set.add(entry);
      return () => set.delete(entry);
    },
    cancelAll() {
      for (const task of tasks) task.cancel();
    },
    async idle() {
      while (tasks.some((task) => !FINAL.includes(task.state))) await Promise.all(tasks.map((task) => task.settled()));
    },
  };
}

function asUploadError(error: unknown): UploadError {
  if (error instanceof UploadError) return error;
  return new UploadError('request_failed', { detail: error instanceof Error ? error.message : String(error) });
}

/** S3 answers POST errors in XML: `<Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message>`. */
function stagingError(response: HttpResponse): UploadError {
  const detail = /<Message>([^<]*)<\/Message>/.exec(response.text)?.[1];
  const expired = response.status === 403 && /expired/i.test(detail ?? '');
  return new UploadError(expired ? 'expired' : 'staging_failed', { status: response.status, detail });
}
