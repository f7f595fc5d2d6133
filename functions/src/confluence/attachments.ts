import { AppError } from '../core/errors';
import { callConfluenceJson, mapUpstreamStatus, parseAttachment, type ConfluenceTarget } from './client';
import type { AttachmentResult } from '../store/ticket-store';

/** An attachment as found on a page: enough to tell whether an upload took effect. */
export interface ExistingAttachment {
  id: string;
  version: number;
  fileSize: number;
  result: AttachmentResult;
}

/**
 * Looks up the current attachment titled `title` on a page
 * (`GET …/child/attachment?filename=`), or undefined when there is none.
 */
export async function findAttachment(
  target: ConfluenceTarget,
  contentId: string,
  title: string,
  timeoutMs: number,
): Promise<ExistingAttachment | undefined> {
  const { status, body, headers } = await callConfluenceJson({
    target,
    method: 'GET',
    path: `/rest/api/content/${encodeURIComponent(contentId)}/child/attachment?filename=${encodeURIComponent(title)}`,
    timeoutMs,
  });
  if (status !== 200) throw mapUpstreamStatus(status, '', { 'retry-after': headers.get('retry-after') ?? undefined });
  const results = (body as { results?: Array<Record<string, any>> } | undefined)?.results ?? [];
  const match = results.find((item) => item?.title === title);
  if (!match) return undefined;
  const result = parseAttachment(title, JSON.stringify({ ...(body as object), results: [match] }), target.baseUrl);
  return { id: result.id, version: result.version, fileSize: result.fileSize, result };
}

/** Whether the page exists for the app (tells "page gone" from Confluence's 404 for an oversized file). */
export async function contentExists(target: ConfluenceTarget, contentId: string, timeoutMs: number): Promise<boolean> {
  const { status, headers } = await callConfluenceJson({
    target,
    method: 'GET',
    path: `/rest/api/content/${encodeURIComponent(contentId)}`,
    timeoutMs,
  });
  if (status === 200) return true;
  if (status === 404) return false;
  throw mapUpstreamStatus(status, '', { 'retry-after': headers.get('retry-after') ?? undefined });
}

/** `report.pdf` → `report (2).pdf`, as Confluence users name copies. */
export function numberedName(name: string, n: number): string {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? `${name.slice(0, dot)} (${n})${name.slice(dot)}` : `${name} (${n})`;
}

const MAX_RENAME_PROBES = 50;

/** The first of `name (2)`, `name (3)`… that the page does not have yet. */
export async function freeName(target: ConfluenceTarget, contentId: string, name: string, timeoutMs: number): Promise<string> {
  for (let n = 2; n <= MAX_RENAME_PROBES + 1; n += 1) {
    const candidate = numberedName(name, n);
    if (!(await findAttachment(target, contentId, candidate, timeoutMs))) return candidate;
  }
  throw new AppError(409, 'name_conflict', 'The page has too many attachments with this name.');
}
