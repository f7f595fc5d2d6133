import type { RelayConfig } from '../core/config';

/**
 * One set of limits feeds the multipart parser, the ticket policy and the
 * local API Gateway emulator, so they cannot disagree.
 */
export interface UploadLimits {
  maxFileBytes: number;
  maxFilesPerTicket: number;
  directMaxBytes: number;
  maxFileNameLength: number;
  maxCommentLength: number;
  maxFieldParts: number;
}

/** AWS facts (aws.md §1, §9): Lambda's invoke payload and API Gateway's body limit. */
export const LAMBDA_MAX_EVENT_BYTES = 6_291_456;
export const API_GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024;
export const API_GATEWAY_TIMEOUT_MS = 30_000;

export function uploadLimits(config: Pick<RelayConfig, 'maxFileBytes' | 'maxFilesPerTicket' | 'directMaxBytes'>): UploadLimits {
  return {
    maxFileBytes: config.maxFileBytes,
    maxFilesPerTicket: config.maxFilesPerTicket,
    directMaxBytes: config.directMaxBytes,
    maxFileNameLength: 255,
    maxCommentLength: 2_000,
    maxFieldParts: 4,
  };
}
