import type { RelayConfig } from '../core/config';

/**
 * The Connect app descriptor. `baseUrl` is exactly the configured public URL;
 * lifecycle paths are relative to it. `signed-install` makes Confluence sign
 * lifecycle callbacks with RS256; `context-qsh` makes `AP.context.getToken()`
 * tokens carry `qsh: "context-qsh"` (atlassian.md §1.4, §2, §3).
 */
export function buildDescriptor(config: Pick<RelayConfig, 'relayBaseUrl' | 'appKey' | 'appName'>): Record<string, unknown> {
  return {
    key: config.appKey,
    name: config.appName,
    description: 'Uploads files from the editor straight into Confluence attachments, without the app vendor keeping them.',
    baseUrl: config.relayBaseUrl,
    vendor: { name: config.appName, url: config.relayBaseUrl },
    authentication: { type: 'jwt' },
    apiVersion: 1,
    lifecycle: { installed: '/lifecycle/installed', uninstalled: '/lifecycle/uninstalled' },
    apiMigrations: { 'signed-install': true, 'context-qsh': true, gdpr: true },
    scopes: ['READ', 'WRITE', 'ACT_AS_USER'],
    modules: {
      dynamicContentMacros: [
        {
          key: 'upload-files',
          name: { value: 'Upload files' },
          description: { value: 'Attach files to this page.' },
          url: '/editor?contentId={page.id}&mode=view',
          outputType: 'block',
          bodyType: 'none',
          editor: {
            url: '/editor?contentId={page.id}&mode=macro-editor',
            editTitle: { value: 'Upload files' },
            insertTitle: { value: 'Upload files' },
            width: '640px',
            height: '480px',
          },
        },
      ],
    },
  };
}
