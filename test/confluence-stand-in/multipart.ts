/**
 * A small, strict, streaming multipart/form-data parser (RFC 7578 / RFC 2046).
 *
 * The relay builds its multipart bodies with its own code and parses browser uploads with busboy, so the
 * stand-in deliberately uses an independent implementation: a relay bug that busboy happens to tolerate
 * should still show up here. It is stricter than most servers on purpose: anything structurally wrong is a
 * MultipartError (the stand-in answers 400).
 *
 * Usage: `write()` every body chunk in order, then `end()`. Part events are delivered synchronously to the
 * handler passed to the constructor.
 */

export class MultipartError extends Error {}

/** What the parser learned from one part's headers. */
export interface PartInfo {
  /** `name` parameter of Content-Disposition. */
  name: string;
  /** `filename` (or RFC 5987 `filename*`) parameter, if present. */
  filename?: string;
  /** Raw Content-Type header value of the part, trimmed; undefined if absent. */
  contentType?: string;
  /** All part headers, lower-cased names. */
  headers: ReadonlyMap<string, string>;
}

export interface PartHandler {
  onPartStart(part: PartInfo): void;
  onPartData(chunk: Buffer): void;
  onPartEnd(): void;
}

const CRLF = Buffer.from('\r\n');
const MAX_HEADER_BLOCK_BYTES = 16 * 1024;
const MAX_TRANSPORT_PADDING = 1024;

type State = 'preamble' | 'afterDelimiter' | 'headers' | 'body' | 'epilogue';

/** RFC 2046 boundary: 1-70 chars from a restricted set, not ending in a space. */
export function isValidBoundary(boundary: string): boolean {
  return /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/.test(boundary);
}

export class MultipartParser {
  /** `\r\n--boundary`; the stream is treated as if it began with CRLF so the first delimiter needs no special case. */
  private readonly delimiter: Buffer;
  private buf: Buffer = CRLF;
  private state: State = 'preamble';
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(boundary: string, private readonly handler: PartHandler) {
    if (!isValidBoundary(boundary)) throw new MultipartError(`invalid multipart boundary "${boundary}"`);
    this.delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  }

  /** True once the close delimiter has been seen. */
  get complete(): boolean {
    return this.state === 'epilogue';
  }

  write(chunk: Buffer): void {
    if (this.state === 'epilogue') return; // RFC 2046: the epilogue is ignored
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.drain();
  }

  end(): void {
    if (this.state !== 'epilogue') {
      throw new MultipartError(`multipart body ended before the close delimiter (in ${this.state})`);
    }
  }

  private drain(): void {
    // Each step either consumes input and changes state, or returns because it needs more bytes.
    for (;;) {
      switch (this.state) {
        case 'preamble': {
          const i = this.buf.indexOf(this.delimiter);
          if (i < 0) {
            // Keep a tail that could be the start of a delimiter split across chunks.
            this.buf = this.buf.subarray(Math.max(0, this.buf.length - (this.delimiter.length - 1)));
            return;
          }
          this.buf = this.buf.subarray(i + this.delimiter.length);
          this.state = 'afterDelimiter';
          break;
        }
        case 'afterDelimiter': {
          if (this.buf.length < 2) return;
          if (this.buf[0] === 0x2d && this.buf[1] === 0x2d) {
            // "--": close delimiter. Whatever follows is epilogue.
            this.buf = Buffer.alloc(0);
            this.state = 'epilogue';
            return;
          }
          // Optional transport padding (LWSP), then CRLF.
          let j = 0;
          while (j < this.buf.length && (this.buf[j] === 0x20 || this.buf[j] === 0x09)) j++;
          if (j > MAX_TRANSPORT_PADDING) throw new MultipartError('too much transport padding after boundary');
          if (this.buf.length < j + 2) return;
          if (this.buf[j] !== 0x0d || this.buf[j + 1] !== 0x0a) {
            throw new MultipartError('boundary delimiter not followed by CRLF or "--"');
          }
          this.buf = this.buf.subarray(j + 2);
          this.state = 'headers';
          break;
        }
        case 'headers': {
          let block: Buffer;
          if (this.buf.length < 2) return;
          if (this.buf[0] === 0x0d && this.buf[1] === 0x0a) {
            block = Buffer.alloc(0); // a part with no headers at all
            this.buf = this.buf.subarray(2);
          } else {
            const end = this.buf.indexOf('\r\n\r\n');
            if (end < 0) {
              if (this.buf.length > MAX_HEADER_BLOCK_BYTES) throw new MultipartError('part header block too large');
              return;
            }
            if (end > MAX_HEADER_BLOCK_BYTES) throw new MultipartError('part header block too large');
            block = this.buf.subarray(0, end);
            this.buf = this.buf.subarray(end + 4);
          }
          this.handler.onPartStart(this.parsePartHeaders(block));
          this.state = 'body';
          break;
        }
        case 'body': {
          const i = this.buf.indexOf(this.delimiter);
          if (i < 0) {
            const safe = this.buf.length - (this.delimiter.length - 1);
            if (safe > 0) {
              this.handler.onPartData(this.buf.subarray(0, safe));
              this.buf = this.buf.subarray(safe);
            }
            return;
          }
          if (i > 0) this.handler.onPartData(this.buf.subarray(0, i));
          this.handler.onPartEnd();
          this.buf = this.buf.subarray(i + this.delimiter.length);
          this.state = 'afterDelimiter';
          break;
        }
        case 'epilogue':
          return;
      }
    }
  }

  private parsePartHeaders(block: Buffer): PartInfo {
    // Browsers put the filename into Content-Disposition as raw UTF-8 bytes (HTML spec), so the header block
    // is decoded as UTF-8; bytes that are not valid UTF-8 are rejected rather than guessed at.
    let text: string;
    try {
      text = this.utf8.decode(block);
    } catch {
      throw new MultipartError('part headers are not valid UTF-8');
    }
    const headers = new Map<string, string>();
    if (text.length > 0) {
      for (const line of text.split('\r\n')) {
        if (/^[ \t]/.test(line)) throw new MultipartError('folded part header lines are not allowed');
        const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*$/.exec(line);
        if (!m) throw new MultipartError(`malformed part header line "${line}"`);
        const name = m[1].toLowerCase();
        if (headers.has(name)) throw new MultipartError(`duplicate part header ${name}`);
        headers.set(name, m[2]);
      }
    }
    const disposition = headers.get('content-disposition');
    if (disposition === undefined) throw new MultipartError('part without Content-Disposition');
    const { type, params } = parseHeaderWithParams(disposition);
    if (type.toLowerCase() !== 'form-data') {
      throw new MultipartError(`part Content-Disposition type must be form-data, got "${type}"`);
    }
    const name = params.get('name');
    if (name === undefined) throw new MultipartError('part Content-Disposition has no name');
    let filename = params.get('filename');
    const extended = params.get('filename*');
    if (extended !== undefined) filename = decodeRfc5987(extended);
    const cte = headers.get('content-transfer-encoding');
    if (cte !== undefined && !/^(binary|8bit|7bit)$/i.test(cte)) {
      throw new MultipartError(`unsupported Content-Transfer-Encoding "${cte}"`);
    }
    return { name, filename, contentType: headers.get('content-type'), headers };
  }
}

/**
 * Parses `type; a=b; c="quoted \"value\""` (RFC 9110 parameters). Parameter names are lower-cased; a repeated
 * parameter is an error. Quoted-strings keep everything literally except backslash escapes (`\x` -> `x`);
 * percent sequences such as the `%22` browsers use for a quote in a filename are NOT decoded.
 */
export function parseHeaderWithParams(value: string): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  let pos = 0;
  const tokenRe = /[!#$%&'*+\-.^_`|~0-9A-Za-z/]+/y;
  const ows = () => {
    while (pos < value.length && (value[pos] === ' ' || value[pos] === '\t')) pos++;
  };
  const token = (what: string): string => {
    tokenRe.lastIndex = pos;
    const m = tokenRe.exec(value);
    if (!m) throw new MultipartError(`expected ${what} at offset ${pos} in "${value}"`);
    pos += m[0].length;
    return m[0];
  };
  ows();
  const type = token('a type');
  for (;;) {
    ows();
    if (pos >= value.length) break;
    if (value[pos] !== ';') throw new MultipartError(`expected ";" at offset ${pos} in "${value}"`);
    pos++;
    ows();
    if (pos >= value.length) break; // tolerate a trailing ";"
    const name = token('a parameter name').toLowerCase();
    ows();
    if (value[pos] !== '=') throw new MultipartError(`expected "=" after parameter ${name}`);
    pos++;
    ows();
    let v = '';
    if (value[pos] === '"') {
      pos++;
      let closed = false;
      while (pos < value.length) {
        const c = value[pos++];
        if (c === '\\') {
          if (pos >= value.length) break;
          v += value[pos++];
        } else if (c === '"') {
          closed = true;
          break;
        } else {
          v += c;
        }
      }
      if (!closed) throw new MultipartError(`unterminated quoted-string in "${value}"`);
    } else {
      v = token(`a value for ${name}`);
    }
    if (params.has(name)) throw new MultipartError(`duplicate parameter ${name}`);
    params.set(name, v);
  }
  return { type, params };
}

/** RFC 5987 ext-value, UTF-8 only: `UTF-8'lang'percent-encoded`. */
function decodeRfc5987(v: string): string {
  const m = /^([^']*)'[^']*'(.*)$/.exec(v);
  if (!m || m[1].toLowerCase() !== 'utf-8') throw new MultipartError(`unsupported filename* value "${v}"`);
  try {
    return decodeURIComponent(m[2]);
  } catch {
    throw new MultipartError(`bad percent-encoding in filename* "${v}"`);
  }
}
