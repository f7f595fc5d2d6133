import busboy from 'busboy';
import { PassThrough, Readable, Transform, type Writable } from 'node:stream';
import { AppError, badRequest } from '../core/errors';

export interface FilePartInfo {
  fieldName: string;
  filename: string;
  mimeType: string;
}

export interface MultipartVisitor {
  /** Called for each file part in order; must consume `stream` (or throw). */
  onFile(info: FilePartInfo, stream: Readable): Promise<void>;
  onField(name: string, value: string, truncated: boolean): void;
}

export interface MultipartLimits {
  maxFiles: number;
  maxFileBytes: number;
  maxFields: number;
  maxFieldBytes: number;
}

/**
 * Base64 characters decoded per chunk, each a multiple of 4 so that every
 * slice decodes on its own: small at first, so that the first part's headers
 * are parsed (and its upload can start) before much is decoded, then 256 Ki.
 */
const BASE64_CHUNK_CHARS = [16 * 1024, 64 * 1024, 256 * 1024];

/**
 * The request body as a stream of small buffers, decoded from API Gateway's
 * base64 a slice at a time so the decoded body never sits in memory whole.
 */
export function bodyStream(body: string | undefined, isBase64Encoded: boolean | undefined): Readable {
  function* chunks(): Generator<Buffer> {
    if (!body) return;
    if (!isBase64Encoded) {
      yield Buffer.from(body, 'utf8');
      return;
    }
    for (let offset = 0, n = 0; offset < body.length; n += 1) {
      const chars = BASE64_CHUNK_CHARS[Math.min(n, BASE64_CHUNK_CHARS.length - 1)];
      yield Buffer.from(body.slice(offset, offset + chars), 'base64');
      offset += chars;
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

/** The boundary parameter of a multipart Content-Type, if it has one. */
function boundaryOf(contentType: string): string | undefined {
  const match = /;\s*boundary=(?:"([^"]{1,200})"|([^\s;]{1,200}))/i.exec(contentType);
  return match ? (match[1] ?? match[2]) : undefined;
}

/**
 * Cuts a body after its close delimiter (`--boundary--`) and drops the
 * epilogue. RFC 2046 says the epilogue is to be ignored, but busboy parses
 * parts after the close delimiter, and a part cut short there keeps its stream
 * open for ever (the request would hang until the function's timeout). A part
 * cannot contain `CRLF--boundary`, so its first occurrence with `--` is the end.
 * Chunks pass through untouched; only the few bytes at a chunk's end that
 * could start a delimiter split across chunks are held back (and copied).
 */
export function closeDelimiterCutter(boundary: string): { take(chunk: Buffer): { pieces: Buffer[]; ended: boolean }; rest(): Buffer | undefined } {
  const close = Buffer.from(`\r\n--${boundary}--`);
  const closeAtStart = close.subarray(2);
  let held: Buffer | undefined;
  let atStart = true;
  let ended = false;
  /** How many bytes at the end of `data` could begin a close delimiter that the next chunk completes. */
  const partialAtEnd = (data: Buffer) => {
    for (let at = Math.max(0, data.length - close.length + 1); at < data.length; at += 1) {
      if (data[at] === 13 && data.subarray(at).equals(close.subarray(0, data.length - at))) return data.length - at;
    }
    return 0;
  };
  return {
    take(chunk) {
      if (ended) return { pieces: [], ended };
      const data = held ? Buffer.concat([held, chunk]) : chunk;
      held = undefined;
      if (atStart && data.length < closeAtStart.length && closeAtStart.subarray(0, data.length).equals(data)) {
        held = data;
        return { pieces: [], ended };
      }
      let end = atStart && data.subarray(0, closeAtStart.length).equals(closeAtStart) ? closeAtStart.length : -1;
      if (end < 0) {
        const at = data.indexOf(close);
        if (at >= 0) end = at + close.length;
      }
      atStart = false;
      if (end >= 0) {
        ended = true;
        return { pieces: [data.subarray(0, end)], ended };
      }
      const keep = partialAtEnd(data);
      if (keep === 0) return { pieces: [data], ended };
      held = Buffer.from(data.subarray(data.length - keep));
      return { pieces: [data.subarray(0, data.length - keep)], ended };
    },
    rest() {
      return ended ? undefined : held;
    },
  };
}

/** The same cut as a stream, for tests and other callers. */
export function endAtCloseDelimiter(boundary: string): Transform {
  const cutter = closeDelimiterCutter(boundary);
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      for (const piece of cutter.take(chunk).pieces) this.push(piece);
      done();
    },
    flush(done) {
      const rest = cutter.rest();
      if (rest) this.push(rest);
      done();
    },
  });
}

/**
 * Pipes `source` into the parser up to the body's close delimiter, as
 * `source.pipe(parser)` would (flowing mode, paused while the parser is
 * full), and settles when the parser has finished or either side failed.
 */
function feed(source: Readable, parser: Writable, boundary: string | undefined): Promise<void> {
  const cutter = boundary ? closeDelimiterCutter(boundary) : undefined;
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let bodyRead = false;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      source.destroy();
      parser.destroy();
      reject(error);
    };
    const finishBody = () => {
      if (bodyRead) return;
      bodyRead = true;
      const rest = cutter?.rest();
      parser.end(rest);
    };
    parser.on('error', fail);
    parser.once('finish', () => {
      if (settled) return;
      settled = true;
      resolve();
    });
    parser.on('drain', () => {
      if (!bodyRead) source.resume();
    });
    // After the close delimiter the rest of the source is not wanted: stopping it is no failure.
    source.on('error', (error) => (bodyRead ? undefined : fail(error)));
    source.on('end', finishBody);
    source.on('data', (chunk: Buffer) => {
      if (bodyRead || settled) return;
      const { pieces, ended } = cutter ? cutter.take(chunk) : { pieces: [chunk], ended: false };
      let full = false;
      for (const piece of pieces) full = !parser.write(piece) || full;
      if (ended) {
        finishBody();
        source.destroy();
      } else if (full) source.pause();
    });
  });
}

function malformed(cause?: unknown): AppError {
  return badRequest('bad_multipart', 'The body is not a well-formed multipart/form-data request.', cause);
}

/**
 * Parses `multipart/form-data` as a stream with busboy and hands each part to
 * the visitor in order. Every parser complaint (no boundary, truncated body,
 * bad headers, too many parts) becomes a 400 `bad_multipart`; errors thrown by
 * the visitor pass through unchanged.
 */
export async function parseMultipart(
  contentType: string | undefined,
  source: Readable,
  limits: MultipartLimits,
  visitor: MultipartVisitor,
): Promise<void> {
  if (!contentType || !/^multipart\/form-data\s*;/i.test(contentType)) {
    source.destroy();
    throw badRequest('bad_multipart', 'Expected a multipart/form-data body.');
  }
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: { 'content-type': contentType },
      // Browsers send file names as raw UTF-8 inside filename="..."; busboy's default is latin1.
      defParamCharset: 'utf8',
      limits: {
        files: limits.maxFiles,
        fileSize: limits.maxFileBytes + 1,
        fields: limits.maxFields,
        fieldSize: limits.maxFieldBytes,
        parts: limits.maxFiles + limits.maxFields,
        headerPairs: 20,
      },
    });
  } catch (cause) {
    source.destroy();
    throw malformed(cause);
  }

  let visitorError: unknown;
  let limitHit: AppError | undefined;
  const pending: Promise<void>[] = [];
  /** Part streams handed to visitors and not finished yet. */
  const openParts = new Set<PassThrough>();
  // Parts are visited one after the other: the next part waits for the previous visit.
  let chain: Promise<void> = Promise.resolve();

  parser.on('file', (fieldName, stream, info) => {
    // The visitor reads a pass-through, never busboy's own stream: a consumer
    // that stops early destroys what it reads, and a destroyed busboy part
    // stream would stall the whole parse. A broken body fails the pass-through
    // too (and is reported once, by feed() below).
    const part = new PassThrough();
    openParts.add(part);
    part.on('close', () => openParts.delete(part));
    part.on('error', () => undefined);
    stream.on('error', (error) => part.destroy(error));
    stream.pipe(part);
    // No more of the body is decoded and parsed until the visitor has had its
    // first turn (it may start an upload with the part's first bytes).
    source.pause();
    const visit = chain.then(async () => {
      try {
        if (visitorError || limitHit) return;
        const visiting = limitsGuard(stream, () => visitor.onFile({ fieldName, filename: info.filename ?? '', mimeType: info.mimeType }, part));
        source.resume();
        await visiting;
      } catch (error) {
        visitorError ??= error;
      } finally {
        source.resume();
        // Whatever the visitor left unread is drained so the parse goes on.
        stream.unpipe(part);
        stream.resume();
      }
    });
    chain = visit;
    pending.push(visit);
  });
  parser.on('field', (name, value, info) => {
    const visit = chain.then(() => {
      if (visitorError) return;
      try {
        visitor.onField(name, value, info.valueTruncated);
      } catch (error) {
        visitorError ??= error;
      }
    });
    chain = visit;
    pending.push(visit);
  });
  const tooMany = () => {
    limitHit ??= badRequest('too_many_parts', 'The request has more parts than allowed.');
  };
  parser.on('partsLimit', tooMany);
  parser.on('filesLimit', tooMany);
  parser.on('fieldsLimit', tooMany);

  try {
    await feed(source, parser, boundaryOf(contentType));
  } catch (cause) {
    // busboy does not always end the stream of the part a broken body stops in
    // (a skipped malformed part, then a body cut short: its part stream stays
    // open forever), so a visitor reading it would wait forever. Fail them.
    for (const part of openParts) part.destroy(malformed(cause));
    await Promise.allSettled(pending);
    // A broken body also breaks the part stream a visitor was reading; that is
    // the body's fault, unless the visitor refused the part for its own reason.
    if (visitorError instanceof AppError) throw visitorError;
    throw malformed(cause);
  }
  await Promise.allSettled(pending);
  if (visitorError) throw visitorError;
  if (limitHit) throw limitHit;
}

/** Runs a file visit; a part cut off by busboy's size limit becomes a 413. */
async function limitsGuard(stream: Readable & { truncated?: boolean }, visit: () => Promise<void>): Promise<void> {
  let truncated = false;
  stream.once('limit', () => {
    truncated = true;
  });
  await visit();
  if (truncated || stream.truncated) throw new AppError(413, 'file_too_large', 'The file is larger than allowed.');
}
