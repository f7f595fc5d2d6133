import busboy from 'busboy';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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

/** Base64 characters decoded per chunk: a multiple of 4, so every slice decodes on its own. */
const BASE64_CHUNK_CHARS = 256 * 1024;

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
    for (let offset = 0; offset < body.length; offset += BASE64_CHUNK_CHARS) {
      yield Buffer.from(body.slice(offset, offset + BASE64_CHUNK_CHARS), 'base64');
    }
  }
  return Readable.from(chunks(), { objectMode: false });
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
  // Parts are visited one after the other: the next part waits for the previous visit.
  let chain: Promise<void> = Promise.resolve();

  parser.on('file', (fieldName, stream, info) => {
    // The visitor reads a pass-through, never busboy's own stream: a consumer
    // that stops early destroys what it reads, and a destroyed busboy part
    // stream would stall the whole parse. A broken body fails the pass-through
    // too (and is reported once, by the pipeline below).
    const part = new PassThrough();
    part.on('error', () => undefined);
    stream.on('error', (error) => part.destroy(error));
    stream.pipe(part);
    const visit = chain.then(async () => {
      try {
        if (visitorError || limitHit) return;
        await limitsGuard(stream, () => visitor.onFile({ fieldName, filename: info.filename ?? '', mimeType: info.mimeType }, part));
      } catch (error) {
        visitorError ??= error;
      } finally {
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
    await pipeline(source, parser);
  } catch (cause) {
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
