import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { createQueryStringHash, fromMethodAndUrl } from 'atlassian-jwt';
import { WEB_ROOT, bundleForBrowser } from '../../../web/build';
import type { MountHandler, Site } from '../../../test/confluence-stand-in/types';

/** A person of the sandbox site. */
export interface SandboxUser {
  accountId: string;
  displayName: string;
  /** May edit the sandbox page (and so upload to it); the others only view it. */
  canEdit: boolean;
}

export interface SandboxPagesOptions {
  /** Where the pages are mounted on the stand-in, e.g. `/sandbox`. */
  prefix: string;
  /** The stand-in's origin (`http://127.0.0.1:<port>`): the "Confluence" the app is framed by. */
  origin: string;
  site: Site;
  pageId: string;
  pageTitle: string;
  spaceKey: string;
  users: readonly SandboxUser[];
  relayBaseUrl: string;
  /** Module URL templates from the relay's descriptor (`/editor?contentId={page.id}&mode=view`). */
  macroUrl: string;
  macroEditorUrl: string;
}

/** Browser code of the sandbox (host page and the `AP` stand-in), built once at start with the editor's build function. */
function buildSandboxAssets(): Map<string, { type: string; body: string }> {
  const sandbox = path.join(WEB_ROOT, 'sandbox');
  return new Map([
    ['/host.js', { type: 'text/javascript; charset=utf-8', body: bundleForBrowser(path.join(sandbox, 'host.ts')) }],
    ['/host.css', { type: 'text/css; charset=utf-8', body: bundleForBrowser(path.join(sandbox, 'host.css')) }],
    ['/all.js', { type: 'text/javascript; charset=utf-8', body: bundleForBrowser(path.join(sandbox, 'all.ts')) }],
  ]);
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  res.end(body);
}

/**
 * The sandbox's Confluence pages, mounted on the stand-in: the page view
 * (`/sandbox/?user=&theme=`), its assets, the `AP` stand-in
 * (`/sandbox/all.js`), and two JSON endpoints the host page uses: a fresh
 * context token for a user (what `AP.context.getToken()` returns) and the
 * page's attachments.
 */
export function sandboxPages(options: SandboxPagesOptions): MountHandler {
  const assets = buildSandboxAssets();
  const relayOrigin = new URL(options.relayBaseUrl).origin;
  const userById = new Map(options.users.map((user) => [user.accountId, user]));
  const defaultUser = options.users[0];

  /**
   * The iframe URL Confluence would build: the module URL with its context
   * variables filled in, plus the parameters all.js reads (`xdm_e`: the
   * host origin) and a page-load JWT whose qsh covers this exact request.
   */
  function appUrl(template: string, user: SandboxUser, channel: string): string {
    const url = new URL(options.relayBaseUrl + template.replace('{page.id}', encodeURIComponent(options.pageId)));
    url.searchParams.set('xdm_e', options.origin);
    url.searchParams.set('xdm_c', channel);
    url.searchParams.set('cp', options.site.contextPath);
    url.searchParams.set('lic', 'none');
    url.searchParams.set('cv', '1.0.0');
    const qsh = createQueryStringHash(fromMethodAndUrl('GET', url.toString()), false, options.relayBaseUrl);
    url.searchParams.set('jwt', options.site.contextToken({ accountId: user.accountId, qsh, expiresInSeconds: 180 }));
    return url.toString();
  }

  function hostPage(query: URLSearchParams): string {
    const user = userById.get(query.get('user') ?? '') ?? defaultUser;
    const theme = ['light', 'dark'].includes(query.get('theme') ?? '') ? (query.get('theme') as string) : 'auto';
    const userOptions = options.users
      .map((u) => `<option value="${escapeHtml(u.accountId)}"${u === user ? ' selected' : ''}>${escapeHtml(`${u.displayName} (${u.canEdit ? 'can edit' : 'view only'})`)}</option>`)
      .join('');
    const themeOptions = [
      ['auto', 'System'],
      ['light', 'Light'],
      ['dark', 'Dark'],
    ]
      .map(([value, label]) => `<option value="${value}"${value === theme ? ' selected' : ''}>${label}</option>`)
      .join('');
    return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(options.pageTitle)} - Confluence sandbox</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${options.prefix}/host.css">
<script src="${options.prefix}/host.js" defer></script>
</head>
<body data-relay-origin="${escapeHtml(relayOrigin)}" data-user="${escapeHtml(user.accountId)}" data-page-id="${escapeHtml(options.pageId)}" data-space-key="${escapeHtml(options.spaceKey)}" data-macro-editor-url="${escapeHtml(appUrl(options.macroEditorUrl, user, 'macro-editor'))}">
<header class="topbar">
<span class="product">Confluence sandbox</span>
<label>Signed in as <select id="user">${userOptions}</select></label>
<label>Theme <select id="theme">${themeOptions}</select></label>
</header>
<main class="page">
<nav class="breadcrumbs" aria-label="Breadcrumbs">Sandbox space / Pages</nav>
<h1>${escapeHtml(options.pageTitle)}</h1>
<p>A page of the local stand-in Confluence (${escapeHtml(options.site.baseUrl)}). Below is the app's "Upload files" macro: the relay's editor page in an iframe, with a stand-in for Atlassian's all.js.</p>
<section class="macro" aria-label="Upload files macro">
<iframe data-app id="macro-frame" title="Upload files" src="${escapeHtml(appUrl(options.macroUrl, user, 'macro'))}"></iframe>
</section>
<p><button type="button" class="host-button" id="open-macro-editor">Edit the "Upload files" macro…</button></p>
<p id="host-status" class="host-status" role="status"></p>
<section aria-labelledby="attachments-title">
<h2 id="attachments-title">Attachments (<span id="attachment-count">0</span>)</h2>
<table>
<thead><tr><th scope="col">File</th><th scope="col">Size</th><th scope="col">Type</th><th scope="col">Version</th><th scope="col">Added by</th></tr></thead>
<tbody id="attachment-rows"></tbody>
</table>
<p id="no-attachments">No attachments yet.</p>
</section>
</main>
<dialog id="macro-dialog" aria-labelledby="macro-dialog-title">
<h2 id="macro-dialog-title">Upload files</h2>
<iframe data-app id="macro-editor-frame" title="Upload files macro editor" src="about:blank"></iframe>
</dialog>
</body>
</html>
`;
  }

  const csp = `default-src 'self'; img-src 'self' data:; frame-src ${relayOrigin}; base-uri 'none'; form-action 'none'`;

  return (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', options.origin);
    const route = url.pathname.slice(options.prefix.length);
    if (req.method !== 'GET') return send(res, 405, 'text/plain', 'Method not allowed', { allow: 'GET' });
    // The page's relative API URLs need the trailing slash.
    if (route === '') return send(res, 302, 'text/plain', '', { location: `${options.prefix}/${url.search}` });
    if (route === '/') return send(res, 200, 'text/html; charset=utf-8', hostPage(url.searchParams), { 'content-security-policy': csp });
    const asset = assets.get(route);
    if (asset) return send(res, 200, asset.type, asset.body);
    if (route === '/api/token') {
      const user = userById.get(url.searchParams.get('user') ?? '');
      if (!user) return send(res, 404, 'application/json', JSON.stringify({ error: 'no such user' }));
      return send(res, 200, 'application/json', JSON.stringify({ token: options.site.contextToken({ accountId: user.accountId }) }));
    }
    if (route === '/api/attachments') {
      const pageId = url.searchParams.get('page') ?? options.pageId;
      const attachments = options.site.attachments(pageId).map((a) => ({
        id: a.id,
        title: a.title,
        fileSize: a.fileSize,
        mediaType: a.mediaType,
        version: a.version,
        createdBy: a.createdBy === 'app' ? 'the app' : (userById.get(a.createdBy)?.displayName ?? a.createdBy),
        sha256: a.sha256,
        downloadUrl: `${options.site.baseUrl}/download/attachments/${encodeURIComponent(pageId)}/${encodeURIComponent(a.title)}`,
      }));
      return send(res, 200, 'application/json', JSON.stringify({ attachments }));
    }
    return send(res, 404, 'text/plain', 'Not found');
  };
}
