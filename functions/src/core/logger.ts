import { Logger } from '@aws-lambda-powertools/logger';

/** The relay's structured JSON logger (Powertools). One instance per process. */
export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'upload-relay' });

const JWT_LIKE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(\.[A-Za-z0-9_-]*)?/g;
/** `rt1.<tenant>.<random>`, and `rt2.<tenant>.<random>.<terms>.<mac>` whole. */
const TICKET_LIKE = /rt[12]\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{20,}(\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{20,})?/g;

/**
 * A short, token-free description of an error for the log. Library messages can
 * quote what they failed on (atlassian-jwt quotes the signed input), so anything
 * shaped like a JWT or a ticket is blanked and the text is cut short.
 */
export function describeError(error: unknown): { name: string; message: string } | undefined {
  if (!(error instanceof Error)) return undefined;
  // Tickets first: a signed ticket's terms segment starts like a JWT (`eyJ`).
  const message = error.message.replace(TICKET_LIKE, '[ticket]').replace(JWT_LIKE, '[token]').slice(0, 300);
  return { name: error.name, message };
}
