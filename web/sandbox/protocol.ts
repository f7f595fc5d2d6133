/**
 * Messages between the sandbox's `AP` stand-in (all.ts, inside the app's
 * iframe) and the sandbox page that hosts the iframe (host.ts). Like
 * Atlassian's all.js, every API call is a postMessage to the host, which
 * answers it; the host origin comes from the iframe URL's `xdm_e` parameter.
 */
export const PROTOCOL = 'sandbox-ap/1';

export type ApCall =
  | 'context.getToken'
  | 'context.getContext'
  | 'confluence.saveMacro'
  | 'confluence.closeMacroEditor'
  | 'confluence.getMacroData'
  | 'theming.initializeTheming'
  | 'resize';

export interface ApRequest {
  protocol: typeof PROTOCOL;
  id: number;
  call: ApCall;
  args: unknown[];
}

export interface ApResponse {
  protocol: typeof PROTOCOL;
  id: number;
  result?: unknown;
  error?: string;
}

/** Pushed by the host without a request (Atlassian's theme changes). */
export interface ApEvent {
  protocol: typeof PROTOCOL;
  event: 'theme';
  colorMode: 'light' | 'dark';
}
