/**
 * Every HTTP route and the handler (one Lambda function each) that serves it.
 * Read by the CDK stack and by the local API Gateway emulator, so the two can
 * never route differently.
 */
export interface RouteDefinition {
  method: 'GET' | 'POST';
  path: string;
  /** File name under functions/src/handlers (without .ts); also the function's name. */
  handler: string;
}

export const ROUTES: readonly RouteDefinition[] = [
  { method: 'GET', path: '/atlassian-connect.json', handler: 'descriptor' },
  { method: 'GET', path: '/health', handler: 'health' },
  { method: 'GET', path: '/editor', handler: 'editor' },
  // The editor page's script and stylesheet (content-hashed names), served by the same function.
  { method: 'GET', path: '/editor/{proxy+}', handler: 'editor' },
  { method: 'POST', path: '/lifecycle/installed', handler: 'lifecycle-installed' },
  { method: 'POST', path: '/lifecycle/uninstalled', handler: 'lifecycle-uninstalled' },
  { method: 'POST', path: '/tickets', handler: 'tickets' },
  { method: 'POST', path: '/uploads', handler: 'uploads' },
  { method: 'POST', path: '/uploads/complete', handler: 'uploads-complete' },
  { method: 'GET', path: '/uploads/status', handler: 'uploads-status' },
];

/** The distinct handler names behind HTTP routes (one function each). */
export const HANDLERS: readonly string[] = [...new Set(ROUTES.map((route) => route.handler))];

/** The function that relays staged files; invoked asynchronously by `uploads-complete`, never over HTTP. */
export const STAGED_RELAY_HANDLER = 'staged-relay';

/** Deletes staged objects no ticket can complete any more; runs on a schedule. */
export const STAGING_SWEEPER_HANDLER = 'staging-sweeper';

/** Every function to bundle and deploy. */
export const ALL_HANDLERS: readonly string[] = [...HANDLERS, STAGED_RELAY_HANDLER, STAGING_SWEEPER_HANDLER];
