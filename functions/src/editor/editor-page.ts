import { gzipSync } from 'node:zlib';
import type { RelayConfig } from '../core/config';
import type { HttpResult } from '../core/http';
import type { EditorAsset } from '../../../web/generated/editor-assets';

/** What only the editor page reads from the environment (the rest is the relay's RelayConfig). */
export interface EditorConfig {
  /** Atlassian's Connect JavaScript API (`AP`); the sandbox serves a stand-in. */
  readonly connectJsUrl: string;
  /** Origin of the staging bucket's presigned POSTs (browsers send big files there), if staging is on. */
  readonly stagingUploadOrigin?: string;
}

export const DEFAULT_CONNECT_JS_URL = 'https://connect-cdn.atl-paas.net/all.js';

function originOf(name: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`Invalid configuration: ${name} must be an absolute URL, got "${value}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`Invalid configuration: ${name} must be an http(s) URL`);
  return url;
}

/**
 * Reads `CONNECT_JS_URL` (default Atlassian's CDN) and `STAGING_UPLOAD_ORIGIN`
 * once, at cold start; a malformed value throws with its name.
 */
export function loadEditorConfig(env: Record<string, string | undefined> = process.env): EditorConfig {
  const connectJsUrl = originOf('CONNECT_JS_URL', env.CONNECT_JS_URL?.trim() || DEFAULT_CONNECT_JS_URL).href;
  const staging = env.STAGING_UPLOAD_ORIGIN?.trim();
  return Object.freeze({
    connectJsUrl,
    ...(staging ? { stagingUploadOrigin: originOf('STAGING_UPLOAD_ORIGIN', staging).origin } : {}),
  });
}

/**
 * CSP `frame-ancestors` sources for the tenant host patterns: Confluence
 * frames the page from the tenant's site. CSP wildcards cover only a
 * leading label, so a pattern with a `*` further in is widened to
 * everything under the part after its last `*`.
 */
export function frameAncestors(hostPatterns: readonly string[], allowHttp: boolean): string[] {
  const sources = new Set<string>();
  for (const pattern of hostPatterns) {
    const host = pattern.includes('*') ? `*${pattern.slice(pattern.lastIndexOf('*') + 1)}` : pattern;
    sources.add(`https://${host}`);
    // Local tenants (the sandbox) run on http with any port.
    if (allowHttp) sources.add(`http://${host}:*`);
  }
  return [...sources];
}

type PageConfig = Pick<RelayConfig, 'relayBaseUrl' | 'allowedTenantHosts' | 'allowHttpTenants'>;

/**
 * The page's Content-Security-Policy: scripts only from the relay and the
 * `all.js` origin, no inline script or style, requests only to the relay and
 * the staging bucket, framed only by tenant sites, nothing else.
 */
export function editorCsp(config: PageConfig, editor: EditorConfig): string {
  const relay = new URL(config.relayBaseUrl).origin;
  const connectJs = new URL(editor.connectJsUrl).origin;
  const directives: Array<[string, string[]]> = [
    ['default-src', ["'none'"]],
    ['script-src', ["'self'", relay, connectJs]],
    ['style-src', ["'self'", relay]],
    ['img-src', ["'self'", 'data:']],
    ['connect-src', ["'self'", relay, ...(editor.stagingUploadOrigin ? [editor.stagingUploadOrigin] : [])]],
    ['frame-ancestors', frameAncestors(config.allowedTenantHosts, config.allowHttpTenants)],
    ['base-uri', ["'none'"]],
    ['form-action', ["'none'"]],
  ];
  return directives.map(([name, sources]) => `${name} ${[...new Set(sources)].join(' ')}`).join('; ');
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * `GET /editor`: the iframe page Confluence opens (query `contentId`, `mode`
 * = `view` or `macro-editor`, read by the page's script). Static per
 * deployment, so it is rendered once at cold start.
 */
export function editorPage(config: PageConfig, editor: EditorConfig, assets: { script: EditorAsset; style: EditorAsset }): HttpResult {
  const base = config.relayBaseUrl;
  const body = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Upload files</title>
<link rel="stylesheet" href="${escapeHtml(`${base}/editor/${assets.style.file}`)}">
<script src="${escapeHtml(editor.connectJsUrl)}"></script>
<script src="${escapeHtml(`${base}/editor/${assets.script.file}`)}" defer></script>
</head>
<body data-relay-url="${escapeHtml(base)}">
<main class="uploader" aria-labelledby="uploader-title">
<h1 id="uploader-title" class="visually-hidden">Upload files</h1>
<section id="drop-zone" class="drop-zone" aria-describedby="drop-hint">
<p id="drop-hint" class="drop-hint">Drag files here, paste an image, or</p>
<button type="button" id="pick" class="button button-primary" disabled>Choose files</button>
<input type="file" id="file-input" multiple hidden>
</section>
<p id="notice" class="notice" role="alert" hidden></p>
<ul id="files" class="files" aria-label="Uploads"></ul>
<div id="macro-actions" class="actions" hidden>
<button type="button" id="insert" class="button button-primary">Insert</button>
<button type="button" id="close" class="button">Close</button>
</div>
<div id="live" class="visually-hidden" aria-live="polite" aria-atomic="true"></div>
</main>
</body>
</html>
`;
  return {
    statusCode: 200,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'content-security-policy': editorCsp(config, editor),
    },
    body,
  };
}

/**
 * The answers for `GET /editor/{file}`: content-hashed, so cached for a
 * year; gzipped once at cold start for browsers that accept it (HTTP APIs
 * do not compress).
 */
export function editorAssetResponses(assets: { script: EditorAsset; style: EditorAsset }): Map<string, (gzip: boolean) => HttpResult> {
  const responses = new Map<string, (gzip: boolean) => HttpResult>();
  for (const asset of [assets.script, assets.style]) {
    const headers = {
      'content-type': asset.contentType,
      'cache-control': 'public, max-age=31536000, immutable',
      'x-content-type-options': 'nosniff',
      vary: 'accept-encoding',
    };
    const gzipped = gzipSync(asset.body).toString('base64');
    responses.set(asset.file, (gzip) =>
      gzip
        ? { statusCode: 200, headers: { ...headers, 'content-encoding': 'gzip' }, body: gzipped, isBase64Encoded: true }
        : { statusCode: 200, headers, body: asset.body },
    );
  }
  return responses;
}
