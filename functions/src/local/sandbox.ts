import { startConfluenceStandIn } from '../../../test/confluence-stand-in/stand-in';
import type { ConfluenceStandIn, Site } from '../../../test/confluence-stand-in/types';
import { startLocalRelay, type LocalRelay } from './relay';
import { sandboxPages, type SandboxUser } from './sandbox-pages';
import { runUntilSignalled } from './run-until-signalled';

/**
 * `npm start`: the whole loop on this machine. The relay exactly as
 * `npm run relay` runs it (Lambda bundles, dynalite, s3rver), a Confluence
 * stand-in site with one page, the app installed into that site with a
 * properly signed install, and a page view (mounted on the stand-in at
 * `/sandbox/`) that frames the relay's editor page with a stand-in for
 * all.js. Nothing here is imported by a Lambda handler.
 */
export interface Sandbox {
  /** The page to open. */
  url: string;
  relay: LocalRelay;
  standIn: ConfluenceStandIn;
  site: Site;
  pageId: string;
  close(): Promise<void>;
}

export const SANDBOX_PAGE_ID = '65538';
export const SANDBOX_USERS: readonly SandboxUser[] = [
  { accountId: 'alice', displayName: 'Alice', canEdit: true },
  { accountId: 'bob', displayName: 'Bob', canEdit: true },
  { accountId: 'victor', displayName: 'Victor', canEdit: false },
];

interface ModuleDescriptor {
  modules: { dynamicContentMacros: Array<{ url: string; editor: { url: string } }> };
}

export async function startSandbox(env: NodeJS.ProcessEnv = process.env): Promise<Sandbox> {
  const standIn = await startConfluenceStandIn({ appKey: env.APP_KEY || undefined });
  let relay: LocalRelay | undefined;
  try {
    const site = standIn.site('sandbox');
    site.addPage(SANDBOX_PAGE_ID, { title: 'Project notes', editors: SANDBOX_USERS.filter((u) => u.canEdit).map((u) => u.accountId) });

    // The relay trusts this stand-in as Atlassian: its install keys, its OAuth server, its (http, loopback) site, its all.js.
    Object.assign(env, {
      CONNECT_INSTALL_KEYS_URL: standIn.installKeysUrl,
      OAUTH_TOKEN_URL: standIn.oauthTokenUrl,
      ALLOWED_TENANT_HOSTS: '127.0.0.1',
      ALLOW_HTTP_TENANTS: 'true',
      CONNECT_JS_URL: `${standIn.origin}/sandbox/all.js`,
    });
    relay = await startLocalRelay({ env });

    const install = site.installRequest({ relayBaseUrl: relay.url });
    const installed = await fetch(`${relay.url}/lifecycle/installed`, {
      method: 'POST',
      headers: { authorization: install.authorization, 'content-type': 'application/json' },
      body: install.body,
    });
    if (!installed.ok) throw new Error(`the relay refused the sandbox's signed install: ${installed.status} ${await installed.text()}`);

    // Frame the module URLs the app declares, as Confluence does.
    const descriptor = (await (await fetch(`${relay.url}/atlassian-connect.json`)).json()) as ModuleDescriptor;
    const macro = descriptor.modules.dynamicContentMacros[0];
    standIn.mount(
      '/sandbox',
      sandboxPages({
        prefix: '/sandbox',
        origin: standIn.origin,
        site,
        pageId: SANDBOX_PAGE_ID,
        pageTitle: 'Project notes',
        spaceKey: 'SBX',
        users: SANDBOX_USERS,
        relayBaseUrl: relay.url,
        macroUrl: macro.url,
        macroEditorUrl: macro.editor.url,
      }),
    );
    const started = relay;
    return {
      url: `${standIn.origin}/sandbox/`,
      relay: started,
      standIn,
      site,
      pageId: SANDBOX_PAGE_ID,
      async close() {
        await started.close();
        await standIn.close();
      },
    };
  } catch (error) {
    await relay?.close();
    await standIn.close();
    throw error;
  }
}

if (require.main === module) {
  runUntilSignalled('Sandbox', () => startSandbox(), (sandbox) => [
    `Relay listening on ${sandbox.relay.url} (health: ${sandbox.relay.url}/health)`,
    `Confluence stand-in on ${sandbox.standIn.origin}, app installed on ${sandbox.site.baseUrl}`,
    `Sandbox ready: open ${sandbox.url}`,
  ]);
}
