/**
 * The sandbox's Confluence page (`/sandbox/`): hosts the app's editor page in
 * iframes (the macro on the page, and the macro editor dialog), answers their
 * `AP` calls as Confluence would (context token from the stand-in site,
 * context, macro data, theme, size), and lists the page's attachments,
 * refreshing them while uploads come in.
 */
import { PROTOCOL, type ApEvent, type ApRequest, type ApResponse } from './protocol';

interface HostData {
  relayOrigin: string;
  user: string;
  pageId: string;
  spaceKey: string;
  macroEditorUrl: string;
}

interface AttachmentRow {
  id: string;
  title: string;
  fileSize: number;
  mediaType: string;
  version: number;
  createdBy: string;
  downloadUrl: string;
}

const data = document.body.dataset as unknown as HostData;
const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const themeSelect = byId<HTMLSelectElement>('theme');
const dialog = byId<HTMLDialogElement>('macro-dialog');
const dialogFrame = byId<HTMLIFrameElement>('macro-editor-frame');
let macroParameters: Record<string, string> = {};
/** Frames whose app has called AP: loaded, on the relay's origin, listening. */
const connected = new Set<HTMLIFrameElement>();

function colorMode(): 'light' | 'dark' {
  if (themeSelect.value === 'light' || themeSelect.value === 'dark') return themeSelect.value;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function frames(): HTMLIFrameElement[] {
  return Array.from(document.querySelectorAll<HTMLIFrameElement>('iframe[data-app]'));
}

function applyTheme(): void {
  const mode = colorMode();
  document.documentElement.setAttribute('data-color-mode', mode);
  const event: ApEvent = { protocol: PROTOCOL, event: 'theme', colorMode: mode };
  for (const frame of connected) frame.contentWindow?.postMessage(event, data.relayOrigin);
}

function status(message: string): void {
  byId('host-status').textContent = message;
}

async function answer(frame: HTMLIFrameElement, request: ApRequest): Promise<unknown> {
  switch (request.call) {
    case 'context.getToken': {
      const response = await fetch(`api/token?user=${encodeURIComponent(data.user)}`);
      if (!response.ok) throw new Error(`token endpoint answered ${response.status}`);
      return ((await response.json()) as { token: string }).token;
    }
    case 'context.getContext':
      return {
        confluence: {
          content: { id: data.pageId, type: 'page', version: '1', status: 'current' },
          space: { key: data.spaceKey, id: '1' },
        },
      };
    case 'confluence.getMacroData':
      return macroParameters;
    case 'confluence.saveMacro':
      macroParameters = (request.args[0] as Record<string, string> | undefined) ?? {};
      status(`The “Upload files” macro was saved on the page (parameters: ${JSON.stringify(macroParameters)}).`);
      return undefined;
    case 'confluence.closeMacroEditor':
      if (frame === dialogFrame) dialog.close();
      return undefined;
    case 'theming.initializeTheming':
      return colorMode();
    case 'resize': {
      const height = String(request.args[1] ?? '');
      if (/^\d+px$/.test(height)) frame.style.height = height;
      return undefined;
    }
    default:
      throw new Error(`AP call ${String(request.call)} is not part of the sandbox`);
  }
}

window.addEventListener('message', (event: MessageEvent<ApRequest>) => {
  if (event.origin !== data.relayOrigin || event.data?.protocol !== PROTOCOL) return;
  const frame = frames().find((f) => f.contentWindow === event.source);
  if (!frame) return;
  connected.add(frame);
  const request = event.data;
  answer(frame, request).then(
    (result) => reply(frame, { protocol: PROTOCOL, id: request.id, result }),
    (error: Error) => reply(frame, { protocol: PROTOCOL, id: request.id, error: error.message }),
  );
});

function reply(frame: HTMLIFrameElement, message: ApResponse): void {
  frame.contentWindow?.postMessage(message, data.relayOrigin);
}

// ---- attachments of the page, as Confluence lists them ----

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

let shown = '';
async function refreshAttachments(): Promise<void> {
  const response = await fetch(`api/attachments?page=${encodeURIComponent(data.pageId)}`);
  if (!response.ok) return;
  const { attachments } = (await response.json()) as { attachments: AttachmentRow[] };
  const text = JSON.stringify(attachments);
  if (text === shown) return;
  shown = text;
  byId('attachment-count').textContent = String(attachments.length);
  byId('no-attachments').hidden = attachments.length > 0;
  const body = byId('attachment-rows');
  body.replaceChildren(
    ...attachments.map((attachment) => {
      const row = document.createElement('tr');
      row.dataset.title = attachment.title;
      const link = document.createElement('a');
      link.href = attachment.downloadUrl;
      link.textContent = attachment.title;
      const cells = [link, formatBytes(attachment.fileSize), attachment.mediaType, `v${attachment.version}`, attachment.createdBy];
      for (const content of cells) {
        const cell = document.createElement('td');
        cell.append(content);
        row.append(cell);
      }
      return row;
    }),
  );
}

function poll(): void {
  refreshAttachments()
    .catch(() => undefined)
    .finally(() => setTimeout(poll, 1000));
}

// ---- controls ----

byId<HTMLSelectElement>('user').addEventListener('change', (event) => {
  const query = new URLSearchParams(location.search);
  query.set('user', (event.target as HTMLSelectElement).value);
  location.search = query.toString();
});
themeSelect.addEventListener('change', applyTheme);
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', applyTheme);
byId('open-macro-editor').addEventListener('click', () => {
  dialogFrame.src = data.macroEditorUrl;
  dialog.showModal();
});
dialog.addEventListener('close', () => {
  // Closing the dialog unloads the editor, as Confluence does.
  connected.delete(dialogFrame);
  dialogFrame.src = 'about:blank';
});

applyTheme();
poll();
