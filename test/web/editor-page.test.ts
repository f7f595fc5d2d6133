import { build } from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { editorCsp, frameAncestors, loadEditorConfig } from '../../functions/src/editor/editor-page';
import { createApiGatewayServer, matchRoute, type LambdaHandler } from '../../functions/src/local/api-gateway';
import { buildHandler, handlerBuildOptions } from '../../functions/src/local/build';
import { ALL_HANDLERS, ROUTES } from '../../functions/src/routes';
import { PROJECT_ROOT, prepareHandlerSources } from '../../infra/lib/bundling';

/**
 * The editor page as the `editor` Lambda serves it (through the local API
 * Gateway emulator, so route matching is covered too): the page, its CSP,
 * its content-hashed assets; and what its bundle must not contain.
 */
const PRODUCTION = {
  relayBaseUrl: 'https://relay.example.com',
  allowedTenantHosts: ['*.atlassian.net'],
  allowHttpTenants: false,
};
const EDITOR = { connectJsUrl: 'https://connect-cdn.atl-paas.net/all.js', stagingUploadOrigin: 'https://uploads.s3.eu-west-1.amazonaws.com' };

describe('editor configuration', () => {
  it('defaults to Atlassian’s all.js and has no staging origin unless told', () => {
    expect(loadEditorConfig({})).toEqual({ connectJsUrl: 'https://connect-cdn.atl-paas.net/all.js' });
    expect(loadEditorConfig({ CONNECT_JS_URL: 'http://127.0.0.1:9/sandbox/all.js', STAGING_UPLOAD_ORIGIN: 'http://127.0.0.1:8/' })).toEqual({
      connectJsUrl: 'http://127.0.0.1:9/sandbox/all.js',
      stagingUploadOrigin: 'http://127.0.0.1:8',
    });
  });

  it.each([
    ['CONNECT_JS_URL', 'all.js'],
    ['CONNECT_JS_URL', 'javascript:alert(1)'],
    ['STAGING_UPLOAD_ORIGIN', 'bucket'],
  ])('refuses a malformed %s at cold start, naming it', (name, value) => {
    expect(() => loadEditorConfig({ [name]: value })).toThrow(new RegExp(`^Invalid configuration: ${name}`));
  });
});

describe('Content-Security-Policy', () => {
  it('frames only from tenant sites: CSP wildcards cover the leading label, http only for local tenants', () => {
    expect(frameAncestors(['*.atlassian.net'], false)).toEqual(['https://*.atlassian.net']);
    expect(frameAncestors(['127.0.0.1'], true)).toEqual(['https://127.0.0.1', 'http://127.0.0.1:*']);
    expect(frameAncestors(['acme.*.example.com', 'wiki.example.org'], false)).toEqual(['https://*.example.com', 'https://wiki.example.org']);
  });

  it('allows scripts from the relay and all.js only, requests to the relay and the bucket only, nothing inline', () => {
    expect(editorCsp(PRODUCTION, EDITOR).split('; ')).toEqual([
      "default-src 'none'",
      "script-src 'self' https://relay.example.com https://connect-cdn.atl-paas.net",
      "style-src 'self' https://relay.example.com",
      "img-src 'self' data:",
      "connect-src 'self' https://relay.example.com https://uploads.s3.eu-west-1.amazonaws.com",
      'frame-ancestors https://*.atlassian.net',
      "base-uri 'none'",
      "form-action 'none'",
    ]);
  });
});

describe('API Gateway route matching (local emulator)', () => {
  it.each([
    ['GET', '/editor', 'GET /editor', undefined],
    ['GET', '/editor/editor.0123456789ab.js', 'GET /editor/{proxy+}', { proxy: 'editor.0123456789ab.js' }],
    ['GET', '/editor/a/b.css', 'GET /editor/{proxy+}', { proxy: 'a/b.css' }],
    ['GET', '/uploads/status', 'GET /uploads/status', undefined],
    ['GET', '/editor/', undefined, undefined],
    ['POST', '/editor/x.js', undefined, undefined],
  ])('%s %s → %s', (method, path, routeKey, pathParameters) => {
    const match = matchRoute(ROUTES, method, path);
    expect(match && `${match.route.method} ${match.route.path}`).toBe(routeKey);
    expect(match?.pathParameters).toEqual(pathParameters);
  });

  it('prefers an exact route over a greedy one, and more literal segments over fewer', () => {
    const routes = [
      { method: 'GET' as const, path: '/a/{proxy+}', handler: 'greedy' },
      { method: 'GET' as const, path: '/a/{id}', handler: 'one' },
      { method: 'GET' as const, path: '/a/b', handler: 'exact' },
    ];
    expect(matchRoute(routes, 'GET', '/a/b')?.route.handler).toBe('exact');
    expect(matchRoute(routes, 'GET', '/a/c')?.route.handler).toBe('one');
    expect(matchRoute(routes, 'GET', '/a/c/d')?.route.handler).toBe('greedy');
  });
});

describe('GET /editor and its assets, served by the editor function', () => {
  let server: http.Server;
  let base: string;
  const env = { ...process.env };
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'editor-bundle-'));

  beforeAll(async () => {
    // The bundle `npm start` and `cdk deploy` run, loaded with a production-like environment.
    const bundle = await buildHandler('editor', bundleDir);
    Object.assign(process.env, {
      RELAY_BASE_URL: PRODUCTION.relayBaseUrl,
      ALLOWED_TENANT_HOSTS: '*.atlassian.net',
      STAGING_UPLOAD_ORIGIN: EDITOR.stagingUploadOrigin,
      POWERTOOLS_LOG_LEVEL: 'SILENT',
    });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { handler } = require(bundle) as { handler: LambdaHandler };
    server = createApiGatewayServer({ routes: ROUTES, handlers: { editor: handler } });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    process.env = env;
    await new Promise((resolve) => server?.close(resolve));
    rmSync(bundleDir, { recursive: true, force: true });
  });

  async function page() {
    const response = await fetch(`${base}/editor?contentId=65538&mode=view`);
    return { response, html: await response.text() };
  }

  it('answers the page with its CSP, every script from a file, none inline', async () => {
    const { response, html } = await page();
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('content-security-policy')).toBe(editorCsp(PRODUCTION, EDITOR));
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.map(([, attributes]) => /src="([^"]+)"/.exec(attributes)?.[1])).toEqual([
      'https://connect-cdn.atl-paas.net/all.js',
      expect.stringMatching(/^https:\/\/relay\.example\.com\/editor\/editor\.[0-9a-f]{12}\.js$/),
    ]);
    expect(scripts.every(([, , body]) => body === '')).toBe(true);
    expect(html).not.toMatch(/\sstyle=|\son[a-z]+=/i);
    expect(html).toContain('data-relay-url="https://relay.example.com"');
  });

  it('serves the page’s script and stylesheet under content-hashed names, gzipped when accepted, cached for a year', async () => {
    const { html } = await page();
    const assetPaths = [...html.matchAll(/(?:src|href)="https:\/\/relay\.example\.com(\/editor\/[^"]+)"/g)].map((m) => m[1]);
    expect(assetPaths).toHaveLength(2);
    for (const assetPath of assetPaths) {
      const plain = await fetch(`${base}${assetPath}`, { headers: { 'accept-encoding': 'identity' } });
      expect(plain.status).toBe(200);
      expect(plain.headers.get('content-type')).toMatch(assetPath.endsWith('.js') ? /^text\/javascript; charset=utf-8$/ : /^text\/css; charset=utf-8$/);
      expect(plain.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      const body = await plain.text();
      expect(body.length).toBeGreaterThan(1000);

      // Node's fetch would decompress on its own; read the raw answer instead.
      const zipped = await new Promise<{ encoding?: string; bytes: Buffer }>((resolve, reject) => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        (require('node:http') as typeof http)
          .get(`${base}${assetPath}`, { headers: { 'accept-encoding': 'gzip, deflate, br' } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => resolve({ encoding: res.headers['content-encoding'], bytes: Buffer.concat(chunks) }));
          })
          .on('error', reject);
      });
      expect(zipped.encoding).toBe('gzip');
      expect(gunzipSync(zipped.bytes).toString('utf8')).toBe(body);
    }
  });

  it('answers an unknown asset with the contract’s 404 error', async () => {
    const response = await fetch(`${base}/editor/editor.000000000000.js`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: 'not_found' } });
  });
});

describe('Lambda bundles', () => {
  it('contain nothing of the sandbox, the tests or the local runtime', async () => {
    for (const handler of ALL_HANDLERS) {
      prepareHandlerSources(handler);
      const result = await build({ ...handlerBuildOptions(handler), write: false, metafile: true, outdir: path.join(os.tmpdir(), 'bundle-check') });
      const inputs = Object.keys(result.metafile!.inputs).map((input) => path.relative(PROJECT_ROOT, path.resolve(PROJECT_ROOT, input)));
      expect({ handler, foreign: inputs.filter((input) => /^(test|web\/sandbox|functions\/src\/local)\//.test(input)) }).toEqual({ handler, foreign: [] });
    }
    // The editor's browser script is in its bundle, the sandbox's AP stand-in is not.
    const editor = await build({ ...handlerBuildOptions('editor'), write: false, outdir: path.join(os.tmpdir(), 'bundle-check') });
    const code = editor.outputFiles.find((file) => file.path.endsWith('.js'))!.text;
    expect(code).toContain('Choose files');
    expect(code).not.toMatch(/sandbox-ap\/1|Confluence sandbox/);
  }, 60_000);
});
