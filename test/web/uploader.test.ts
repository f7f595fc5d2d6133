import { createUploader, UploadError, type TicketRequest, type UploadTask, type UploaderOptions } from '../../web/client';
import { FakeServer, type SeenRequest } from './fake-xhr';

/**
 * The client library's logic against a fake XMLHttpRequest: tickets, both
 * transports, retries and their limits, cancel, concurrency, events. The
 * same library runs against the real relay in Chromium (test/browser).
 */
const RELAY = 'https://relay.example';
const S3 = 'https://bucket.s3.eu-west-1.amazonaws.com/';
const soon = () => new Date(Date.now() + 300_000).toISOString();

function file(name: string, size = 1000, type = 'text/plain'): File {
  return new File([new Uint8Array(size)], name, { type });
}

function attachment(name: string, extra: Record<string, unknown> = {}) {
  return { name, id: `att-${name}`, title: name, mediaType: 'text/plain', fileSize: 1000, version: 1, downloadUrl: `https://x.atlassian.net/wiki/download/${name}`, outcome: 'created', ...extra };
}

/** A ticket answer with every declared file direct, or staged when its name says so. */
function ticketFor(request: SeenRequest, ticket = 'ticket-1') {
  const { files } = JSON.parse(request.body as string) as TicketRequest;
  return {
    status: 201,
    body: {
      ticket,
      expiresAt: soon(),
      uploads: files.map(({ name }) =>
        name.startsWith('big')
          ? { name, mode: 'staged', post: { url: S3, fields: { key: `staging/${name}`, Policy: 'p', 'Content-Type': 'application/zip' } }, completeUrl: `${RELAY}/uploads/complete` }
          : { name, mode: 'direct', url: `${RELAY}/uploads` },
      ),
    },
  };
}

/** Answers a direct upload with the attachments of its file parts. */
const uploaded = (request: SeenRequest) => ({
  status: 200,
  body: { attachments: request.parts.filter(([name]) => name === 'file').map(([, filename]) => attachment(filename)) },
});

function setup(options: Partial<UploaderOptions> = {}) {
  const server = new FakeServer();
  let tokens = 0;
  const getToken = jest.fn(async () => `context-token-${++tokens}`);
  const uploader = createUploader({
    relayUrl: RELAY,
    contentId: '65538',
    getToken,
    createXhr: server.createXhr,
    retryDelayMs: 1,
    pollIntervalMs: 1,
    ...options,
  });
  const events: string[] = [];
  uploader.on('state', ({ task }) => events.push(`${task.name}:${task.state}`));
  uploader.on('done', ({ task }) => events.push(`${task.name}:done-event`));
  uploader.on('error', ({ task, error }) => events.push(`${task.name}:error-event:${error.code}`));
  return { server, uploader, getToken, events };
}

const errorOf = (task: UploadTask) => ({ state: task.state, code: task.error?.code, message: task.error?.message });

describe('createUploader', () => {
  it('needs relayUrl and getToken, or requestTicket', () => {
    expect(() => createUploader({ contentId: '1' })).toThrow(TypeError);
    expect(() => createUploader({ contentId: '1', relayUrl: RELAY })).toThrow(TypeError);
    expect(() => createUploader({ contentId: '1', requestTicket: async () => ({ ticket: 't', expiresAt: soon(), uploads: [] }) })).not.toThrow();
  });
});

describe('direct uploads', () => {
  it('asks one ticket with the context JWT, posts each file with the ticket, reports progress and the attachment', async () => {
    const { server, uploader, events } = setup();
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, uploaded);
    const progress: number[] = [];
    uploader.on('progress', ({ task, loaded, total }) => task.name === 'a.txt' && progress.push(loaded / total));

    const [a, b] = uploader.add([file('a.txt'), file('b.png', 2000, 'image/png')]);
    await uploader.idle();

    const ticketRequests = server.requests.filter((r) => r.url === `${RELAY}/tickets`);
    expect(ticketRequests).toHaveLength(1);
    expect(ticketRequests[0].headers).toMatchObject({ authorization: 'JWT context-token-1', 'content-type': 'application/json' });
    expect(JSON.parse(ticketRequests[0].body as string)).toEqual({
      contentId: '65538',
      files: [
        { name: 'a.txt', size: 1000, type: 'text/plain' },
        { name: 'b.png', size: 2000, type: 'image/png' },
      ],
    });
    const uploads = server.requests.filter((r) => r.url === `${RELAY}/uploads`);
    expect(uploads.map((r) => [r.headers.authorization, r.parts])).toEqual([
      ['Bearer ticket-1', [['file', 'a.txt']]],
      ['Bearer ticket-1', [['file', 'b.png']]],
    ]);
    expect(a).toMatchObject({ state: 'done', loaded: 1000, mode: 'direct', attachment: attachment('a.txt') });
    expect(b.attachment?.id).toBe('att-b.png');
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress).toEqual([...progress].sort((x, y) => x - y));
    expect(progress.at(-1)).toBe(1);
    expect(events.filter((e) => e.startsWith('a.txt'))).toEqual(['a.txt:queued', 'a.txt:uploading', 'a.txt:relaying', 'a.txt:done', 'a.txt:done-event']);
  });

  it('sends comment and minorEdit on the ticket, and octet-stream for files without a type', async () => {
    const { server, uploader } = setup({ comment: 'from the editor', minorEdit: false });
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, uploaded);
    uploader.add([new File([new Uint8Array(3)], 'raw', { type: '' })]);
    await uploader.idle();
    expect(JSON.parse(server.requests[0].body as string)).toEqual({
      contentId: '65538',
      files: [{ name: 'raw', size: 3, type: 'application/octet-stream' }],
      comment: 'from the editor',
      minorEdit: false,
    });
  });

  it('keeps each name once per ticket and at most filesPerTicket files per ticket', async () => {
    const { server, uploader } = setup({ filesPerTicket: 2 });
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, uploaded);
    uploader.add([file('same.txt'), file('same.txt'), file('c.txt'), file('d.txt')]);
    await uploader.idle();
    const declared = server.requests.filter((r) => r.url.endsWith('/tickets')).map((r) => (JSON.parse(r.body as string) as TicketRequest).files.map((f) => f.name));
    expect(declared).toEqual([['same.txt', 'c.txt'], ['same.txt', 'd.txt']]);
    expect(uploader.tasks.every((t) => t.state === 'done')).toBe(true);
  });

  it('never runs more than `concurrency` transfers at once', async () => {
    const { server, uploader } = setup({ concurrency: 2 });
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, uploaded);
    uploader.add(['1', '2', '3', '4', '5'].map((n) => file(`${n}.txt`)));
    await uploader.idle();
    expect(server.count('POST', `${RELAY}/uploads`)).toBe(5);
    expect(server.maxInFlight).toBe(2);
  });
});

describe('staged uploads', () => {
  it('posts the policy fields then the file to the bucket, completes, and polls the status URL until done', async () => {
    const { server, uploader, events } = setup();
    const statusUrl = `${RELAY}/uploads/status?name=big.zip`;
    server
      .on('POST', `${RELAY}/tickets`, ticketFor)
      .on('POST', S3, { status: 204 })
      .on('POST', `${RELAY}/uploads/complete`, { status: 202, body: { status: 'relaying', statusUrl } })
      .on('GET', statusUrl, { status: 202, body: { status: 'relaying', statusUrl } }, { status: 202, body: { status: 'relaying', statusUrl } }, { status: 200, body: { attachments: [attachment('big.zip')] } });

    const [task] = uploader.add([file('big.zip', 5000, 'application/zip')]);
    await uploader.idle();

    const post = server.requests.find((r) => r.url === S3)!;
    expect(post.headers.authorization).toBeUndefined();
    expect(post.parts).toEqual([
      ['key', 'staging/big.zip'],
      ['Policy', 'p'],
      ['Content-Type', 'application/zip'],
      ['file', 'big.zip'],
    ]);
    const complete = server.requests.find((r) => r.url === `${RELAY}/uploads/complete`)!;
    expect(complete.headers).toMatchObject({ authorization: 'Bearer ticket-1', 'content-type': 'application/json' });
    expect(JSON.parse(complete.body as string)).toEqual({ name: 'big.zip' });
    expect(server.requests.filter((r) => r.url === statusUrl).map((r) => r.headers.authorization)).toEqual(['Bearer ticket-1', 'Bearer ticket-1', 'Bearer ticket-1']);
    expect(task).toMatchObject({ state: 'done', mode: 'staged', attachment: attachment('big.zip') });
    expect(events).toEqual(['big.zip:queued', 'big.zip:uploading', 'big.zip:relaying', 'big.zip:done', 'big.zip:done-event']);
  });

  it('takes a 200 from /uploads/complete as the final answer', async () => {
    const { server, uploader } = setup();
    server
      .on('POST', `${RELAY}/tickets`, ticketFor)
      .on('POST', S3, { status: 204 })
      .on('POST', `${RELAY}/uploads/complete`, { status: 200, body: { attachments: [attachment('big.zip')] } });
    const [task] = uploader.add([file('big.zip')]);
    await uploader.idle();
    expect(task.state).toBe('done');
    expect(server.count('GET', RELAY)).toBe(0);
  });

  it('reports an expired presigned POST as expired once a fresh ticket does not help either', async () => {
    const { server, uploader } = setup();
    const expired = { status: 403, body: '<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message></Error>' };
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', S3, expired);
    const [task] = uploader.add([file('big.zip')]);
    await uploader.idle();
    expect(errorOf(task)).toEqual({ state: 'error', code: 'expired', message: 'Your session has expired. Reload the page and try again.' });
    // One batch ticket, then one fresh ticket for the file.
    expect(server.count('POST', `${RELAY}/tickets`)).toBe(2);
  });

  it('retries a bucket 503 and reports other bucket refusals as staging_failed with S3’s message', async () => {
    const { server, uploader } = setup();
    server
      .on('POST', `${RELAY}/tickets`, ticketFor)
      .on('POST', S3, { status: 503, body: '<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>' }, { status: 400, body: '<Error><Code>EntityTooLarge</Code><Message>Your proposed upload exceeds the maximum allowed size</Message></Error>' });
    const [task] = uploader.add([file('big.zip')]);
    await uploader.idle();
    expect(server.count('POST', S3)).toBe(2);
    expect(task.error).toMatchObject({ code: 'staging_failed', status: 400, detail: 'Your proposed upload exceeds the maximum allowed size' });
  });
});

describe('errors and retries', () => {
  it('gives every file the relay’s error code and a human message when the ticket is refused for the page', async () => {
    const { server, uploader, events } = setup();
    server.on('POST', `${RELAY}/tickets`, { status: 403, body: { error: { code: 'forbidden', message: 'You may not edit this content.' }, requestId: 'req-1' } });
    const tasks = uploader.add([file('a.txt'), file('b.txt')]);
    await uploader.idle();
    expect(server.count('POST', `${RELAY}/tickets`)).toBe(1);
    for (const task of tasks) {
      expect(task.error).toBeInstanceOf(UploadError);
      expect(task.error).toMatchObject({ code: 'forbidden', status: 403, requestId: 'req-1', detail: 'You may not edit this content.', message: "You don't have permission to add files to this page." });
    }
    expect(events).toContain('a.txt:error-event:forbidden');
  });

  it('asks again per file when one file makes the batch ticket fail, so the others still upload', async () => {
    const { server, uploader } = setup();
    const tooLarge = { status: 413, body: { error: { code: 'file_too_large', message: 'Files may be at most 100 bytes.' } } };
    server
      .on('POST', `${RELAY}/tickets`, (request) => ((JSON.parse(request.body as string) as TicketRequest).files.some((f) => f.size > 100) ? tooLarge : ticketFor(request)))
      .on('POST', `${RELAY}/uploads`, uploaded);
    const [small, huge] = uploader.add([file('small.txt', 10), file('huge.txt', 1000)]);
    await uploader.idle();
    expect(small.state).toBe('done');
    expect(errorOf(huge)).toEqual({ state: 'error', code: 'file_too_large', message: 'This file is larger than the upload limit.' });
    expect(server.count('POST', `${RELAY}/tickets`)).toBe(3);
  });

  it('retries 429 and 5xx with backoff, waiting as long as Retry-After says', async () => {
    const { server, uploader } = setup();
    server
      .on('POST', `${RELAY}/tickets`, { status: 503, body: { error: { code: 'upstream_unavailable', message: 'busy' } } }, ticketFor)
      .on('POST', `${RELAY}/uploads`, { status: 429, headers: { 'Retry-After': '1' }, body: { error: { code: 'rate_limited', message: 'slow down' } } }, { status: 502 }, uploaded);
    const started = Date.now();
    const [task] = uploader.add([file('a.txt')]);
    await uploader.idle();
    expect(task.state).toBe('done');
    expect(server.count('POST', `${RELAY}/tickets`)).toBe(2);
    expect(server.count('POST', `${RELAY}/uploads`)).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it('retries a lost connection and a file still in flight elsewhere (409 already_uploaded)', async () => {
    const { server, uploader } = setup();
    server
      .on('POST', `${RELAY}/tickets`, ticketFor)
      .on('POST', `${RELAY}/uploads`, 'network', { status: 409, body: { error: { code: 'already_uploaded', message: 'in flight' } } }, uploaded);
    const [task] = uploader.add([file('a.txt')]);
    await uploader.idle();
    expect(task.state).toBe('done');
    expect(server.count('POST', `${RELAY}/uploads`)).toBe(3);
  });

  it('stops after `retries` and reports the last error', async () => {
    const { server, uploader } = setup({ retries: 2 });
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, { status: 502, body: { error: { code: 'upstream_error', message: 'Confluence said 500' } } });
    const [task] = uploader.add([file('a.txt')]);
    await uploader.idle();
    expect(server.count('POST', `${RELAY}/uploads`)).toBe(3);
    expect(errorOf(task)).toEqual({ state: 'error', code: 'upstream_error', message: 'Confluence could not store the file. Try again.' });
  });

  it('gives up at once when Retry-After is longer than maxRetryDelayMs, keeping the wait on the error', async () => {
    const { server, uploader } = setup({ maxRetryDelayMs: 5000 });
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, { status: 429, headers: { 'retry-after': '120' }, body: { error: { code: 'rate_limited', message: 'slow down' } } });
    const [task] = uploader.add([file('a.txt')]);
    await uploader.idle();
    expect(server.count('POST', `${RELAY}/uploads`)).toBe(1);
    expect(task.error).toMatchObject({ code: 'rate_limited', retryAfterMs: 120_000, message: 'Confluence is busy right now. Try again in a minute.' });
  });

  it('does not retry other client errors, and reports a network failure as network', async () => {
    const { server, uploader } = setup({ retries: 1 });
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, (r) => (r.parts[0][1] === 'gone.txt' ? { status: 404, body: { error: { code: 'content_not_found', message: 'x' } } } : 'network'));
    const [gone, offline] = uploader.add([file('gone.txt'), file('offline.txt')]);
    await uploader.idle();
    expect(errorOf(gone)).toEqual({ state: 'error', code: 'content_not_found', message: 'This page no longer exists.' });
    expect(errorOf(offline)).toEqual({ state: 'error', code: 'network', message: 'The connection was lost. Check your network and try again.' });
    expect(server.count('POST', `${RELAY}/uploads`)).toBe(1 + 2);
  });

  it('uses a fresh context token when the relay answers the ticket request 401', async () => {
    const { server, uploader, getToken } = setup();
    server.on('POST', `${RELAY}/tickets`, { status: 401, body: { error: { code: 'unauthorized', message: 'Missing or invalid credentials.' } } }, ticketFor).on('POST', `${RELAY}/uploads`, uploaded);
    const [task] = uploader.add([file('a.txt')]);
    await uploader.idle();
    expect(task.state).toBe('done');
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(server.requests.filter((r) => r.url.endsWith('/tickets')).map((r) => r.headers.authorization)).toEqual(['JWT context-token-1', 'JWT context-token-2']);
  });

  it('reports a context token the relay refuses twice as unauthorized, without more attempts', async () => {
    const { server, uploader, getToken } = setup();
    server.on('POST', `${RELAY}/tickets`, { status: 401, body: { error: { code: 'unauthorized', message: 'Missing or invalid credentials.' } } });
    const [task] = uploader.add([file('a.txt')]);
    await uploader.idle();
    expect(errorOf(task)).toEqual({ state: 'error', code: 'unauthorized', message: 'Your session has expired. Reload the page and try again.' });
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(server.count('POST', RELAY)).toBe(2);
  });

  it('replaces a ticket the relay no longer accepts and uploads with the new one', async () => {
    const { server, uploader } = setup();
    let tickets = 0;
    server
      .on('POST', `${RELAY}/tickets`, (request) => ticketFor(request, `ticket-${++tickets}`))
      .on('POST', `${RELAY}/uploads`, (request) => (request.headers.authorization === 'Bearer ticket-1' ? { status: 401, body: { error: { code: 'unauthorized', message: 'x' } } } : uploaded(request)));
    const [task] = uploader.add([file('a.txt')]);
    await uploader.idle();
    expect(task.state).toBe('done');
    expect(server.requests.filter((r) => r.url.endsWith('/uploads')).map((r) => r.headers.authorization)).toEqual(['Bearer ticket-1', 'Bearer ticket-2']);
  });
});

describe('cancel and retry', () => {
  it('cancel aborts the transfer: no error event, state cancelled; retry uploads with the same ticket', async () => {
    const { server, uploader, events } = setup();
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, 'hang', uploaded);
    const [task] = uploader.add([file('a.txt')]);
    while (server.count('POST', `${RELAY}/uploads`) === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    task.cancel();
    await task.settled();
    expect(task.state).toBe('cancelled');
    expect(server.inFlight).toBe(0);
    expect(events).not.toContain('a.txt:error-event:aborted');

    task.retry();
    expect(task.state).toBe('queued');
    await task.settled();
    expect(task.state).toBe('done');
    expect(server.count('POST', `${RELAY}/tickets`)).toBe(1);
  });

  it('a file cancelled while waiting for a slot is never sent; cancelAll stops the rest', async () => {
    const { server, uploader } = setup({ concurrency: 1 });
    server.on('POST', `${RELAY}/tickets`, ticketFor).on('POST', `${RELAY}/uploads`, 'hang');
    const [first, second, third] = uploader.add([file('1.txt'), file('2.txt'), file('3.txt')]);
    while (server.count('POST', `${RELAY}/uploads`) === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    second.cancel();
    uploader.cancelAll();
    await uploader.idle();
    expect([first.state, second.state, third.state]).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(server.requests.filter((r) => r.url.endsWith('/uploads')).map((r) => r.parts[0][1])).toEqual(['1.txt']);
  });

  it('cancel has no effect once all bytes are sent (Confluence is already receiving the file)', async () => {
    const { server, uploader } = setup();
    const statusUrl = `${RELAY}/uploads/status?name=big.zip`;
    server
      .on('POST', `${RELAY}/tickets`, ticketFor)
      .on('POST', S3, { status: 204 })
      .on('POST', `${RELAY}/uploads/complete`, { status: 202, body: { status: 'relaying', statusUrl } })
      .on('GET', statusUrl, { status: 202, body: { statusUrl } }, { status: 200, body: { attachments: [attachment('big.zip')] } });
    const [task] = uploader.add([file('big.zip')]);
    while (task.state !== 'relaying') await new Promise((resolve) => setTimeout(resolve, 1));
    task.cancel();
    await task.settled();
    expect(task.state).toBe('done');
  });
});

describe('requestTicket (Forge Custom UI)', () => {
  it('gets tickets from the given function instead of POST /tickets, and passes its UploadError on', async () => {
    const server = new FakeServer().on('POST', `${RELAY}/uploads`, uploaded);
    const requestTicket = jest.fn(async (request: TicketRequest) => {
      if (request.files.some((f) => f.name === 'denied.txt')) throw new UploadError('forbidden', { status: 403 });
      return { ticket: 'forge-ticket', expiresAt: soon(), uploads: request.files.map((f) => ({ name: f.name, mode: 'direct' as const, url: `${RELAY}/uploads` })) };
    });
    const uploader = createUploader({ contentId: '65538', requestTicket, createXhr: server.createXhr, retryDelayMs: 1 });
    const [ok] = uploader.add([file('ok.txt')]);
    await uploader.idle();
    const [denied] = uploader.add([file('denied.txt')]);
    await uploader.idle();
    expect(ok.state).toBe('done');
    expect(server.requests.map((r) => `${r.url} ${r.headers.authorization}`)).toEqual([`${RELAY}/uploads Bearer forge-ticket`]);
    expect(requestTicket).toHaveBeenCalledWith({ contentId: '65538', files: [{ name: 'ok.txt', size: 1000, type: 'text/plain' }] });
    expect(denied.error).toMatchObject({ code: 'forbidden', message: "You don't have permission to add files to this page." });
  });

  it('turns anything else it throws into request_failed with the thrown message', async () => {
    const uploader = createUploader({ contentId: '1', requestTicket: async () => Promise.reject(new Error('invokeRemote: 500')), createXhr: new FakeServer().createXhr });
    const [task] = uploader.add([file('a.txt')]);
    await uploader.idle();
    expect(task.error).toMatchObject({ code: 'request_failed', detail: 'invokeRemote: 500', message: 'invokeRemote: 500' });
  });
});
