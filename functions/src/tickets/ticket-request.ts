import { AppError, badRequest } from '../core/errors';
import type { DeclaredFile } from '../store/ticket-store';
import type { UploadLimits } from '../uploads/limits';

export interface TicketRequest {
  contentId: string;
  files: DeclaredFile[];
  comment?: string;
  minorEdit: boolean;
}

/** Confluence content ids are numeric. */
const CONTENT_ID = /^\d{1,20}$/;
/** A media type without parameters (`image/png`, `application/vnd.ms-excel`). */
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;
/**
 * Names that could not survive the trip as a header parameter or a Confluence
 * title: control characters (CR, LF, NUL...), path separators, and the
 * backslash that some multipart parsers treat as an escape.
 */
const FORBIDDEN_NAME_CHARS = /[\u0000-\u001f\u007f/\\]/;

function validateName(name: unknown, limits: UploadLimits): string {
  if (typeof name !== 'string' || name.trim() === '') throw badRequest('bad_request', 'Each file needs a name.');
  if (name.length > limits.maxFileNameLength) {
    throw badRequest('bad_file_name', `File names may be at most ${limits.maxFileNameLength} characters long.`);
  }
  if (FORBIDDEN_NAME_CHARS.test(name) || name === '.' || name === '..') {
    throw badRequest('bad_file_name', 'File names may not contain control characters, slashes or backslashes.');
  }
  if (/[\uD800-\uDFFF]/u.test(name)) {
    // A lone surrogate has no UTF-8 form: the name could never match the part's filename.
    throw badRequest('bad_file_name', 'File names must be valid Unicode text.');
  }
  if (name.normalize('NFC') !== name) {
    // Different byte sequences for the same visible name would defeat the per-ticket binding.
    throw badRequest('bad_file_name', 'File names must be in Unicode normal form C.');
  }
  return name;
}

/** Validates `POST /tickets` bodies (contract "Tickets"). */
export function parseTicketRequest(body: Record<string, unknown>, limits: UploadLimits): TicketRequest {
  const { contentId, files, comment, minorEdit } = body;
  if (typeof contentId !== 'string' || !CONTENT_ID.test(contentId)) {
    throw badRequest('bad_request', 'contentId must be the numeric id of a Confluence page or blog post, as a string.');
  }
  if (!Array.isArray(files) || files.length === 0) throw badRequest('bad_request', 'files must list at least one file.');
  if (files.length > limits.maxFilesPerTicket) {
    throw badRequest('too_many_files', `A ticket covers at most ${limits.maxFilesPerTicket} files.`);
  }
  const seen = new Set<string>();
  const declared = files.map((file: unknown): DeclaredFile => {
    if (typeof file !== 'object' || file === null) throw badRequest('bad_request', 'Each file must be an object.');
    const entry = file as Record<string, unknown>;
    const name = validateName(entry.name, limits);
    if (seen.has(name)) throw badRequest('duplicate_file', 'Each file name may appear once per ticket.');
    seen.add(name);
    const size = entry.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw badRequest('bad_request', 'Each file needs its size in bytes as a whole number.');
    }
    if (size > limits.maxFileBytes) {
      throw new AppError(413, 'file_too_large', `Files may be at most ${limits.maxFileBytes} bytes.`);
    }
    const type = entry.type === undefined || entry.type === '' ? 'application/octet-stream' : entry.type;
    if (typeof type !== 'string' || !MEDIA_TYPE.test(type)) throw badRequest('bad_request', 'type must be a media type such as image/png.');
    return { name, size, type: type.toLowerCase() };
  });
  if (comment !== undefined && (typeof comment !== 'string' || comment.length > limits.maxCommentLength || /[\u0000]/.test(comment))) {
    throw badRequest('bad_request', `comment must be a string of at most ${limits.maxCommentLength} characters.`);
  }
  if (minorEdit !== undefined && typeof minorEdit !== 'boolean') throw badRequest('bad_request', 'minorEdit must be true or false.');
  return { contentId, files: declared, comment: comment as string | undefined, minorEdit: minorEdit ?? true };
}
