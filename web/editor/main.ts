/**
 * The editor iframe page (`GET /editor?contentId=&mode=view|macro-editor`):
 * file picker, drag and drop and paste into one list of uploads with
 * progress, cancel and retry, built on the client library. Talks to
 * Confluence only through `AP` (all.js): the context token for tickets, the
 * page id when the URL lacks it, theming, resizing and the macro editor.
 */
import { createUploader, type Uploader, type UploadTask } from '../client';
import { viaCallback, type ConnectApi } from './ap';

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

function element<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text = ''): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

/** Screen-reader announcements through the page's polite live region. */
function announce(message: string): void {
  const live = byId('live');
  // Re-setting the same text is not announced again; clear first.
  live.textContent = '';
  window.setTimeout(() => (live.textContent = message), 50);
}

function showNotice(message: string): void {
  const notice = byId('notice');
  notice.textContent = message;
  notice.hidden = false;
}

/** One row of the upload list. */
class UploadRow {
  readonly item = element('li', 'file');
  private readonly name = element('span', 'file-name');
  private readonly status = element('span', 'file-status');
  private readonly bar = element('progress', 'file-progress');
  private readonly message = element('p', 'file-message');
  private readonly cancel = element('button', 'button button-subtle', 'Cancel');
  private readonly retry = element('button', 'button button-subtle', 'Retry');
  private announcedQuarter = 0;

  constructor(private readonly task: UploadTask) {
    const head = element('div', 'file-head');
    this.name.textContent = task.name;
    head.append(this.name, element('span', 'file-size', formatBytes(task.size)), this.status);
    this.bar.max = 100;
    this.bar.setAttribute('aria-label', `Upload of ${task.name}`);
    for (const [button, label, action] of [
      [this.cancel, `Cancel upload of ${task.name}`, () => task.cancel()],
      [this.retry, `Retry upload of ${task.name}`, () => task.retry()],
    ] as const) {
      button.type = 'button';
      button.setAttribute('aria-label', label);
      button.addEventListener('click', action);
    }
    const actions = element('div', 'file-actions');
    actions.append(this.cancel, this.retry);
    this.item.append(head, this.bar, this.message, actions);
    this.update();
  }

  update(): void {
    const { task } = this;
    const percent = task.size ? Math.floor((task.loaded / task.size) * 100) : task.state === 'queued' ? 0 : 100;
    this.item.dataset.state = task.state;
    this.bar.value = task.state === 'done' ? 100 : percent;
    this.bar.hidden = task.state === 'error' || task.state === 'cancelled';
    this.status.textContent = {
      queued: 'Waiting…',
      uploading: `${percent}%`,
      relaying: 'Saving to Confluence…',
      done: task.attachment?.outcome === 'versioned' ? `Uploaded as version ${task.attachment.version}` : 'Uploaded',
      error: 'Failed',
      cancelled: 'Cancelled',
    }[task.state];
    this.message.textContent = task.state === 'error' ? (task.error?.message ?? 'The upload failed.') : '';
    this.message.hidden = !this.message.textContent;

    const url = task.attachment?.downloadUrl;
    if (task.state === 'done' && url && !(this.name instanceof HTMLAnchorElement)) {
      const link = element('a', 'file-name', task.name);
      link.href = url;
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
      this.name.replaceWith(link);
    }
    // Keep keyboard focus in the row when the button it was on disappears.
    const cancellable = task.state === 'queued' || task.state === 'uploading';
    const retryable = task.state === 'error' || task.state === 'cancelled';
    const focused = document.activeElement;
    this.cancel.hidden = !cancellable;
    this.retry.hidden = !retryable;
    if (focused === this.cancel && !cancellable && retryable) this.retry.focus();
    if (focused === this.retry && !retryable && cancellable) this.cancel.focus();

    if (task.state === 'uploading' && task.size) {
      const quarter = Math.floor(percent / 25);
      if (quarter > this.announcedQuarter && quarter < 4) announce(`${task.name}: ${quarter * 25}% uploaded`);
      this.announcedQuarter = Math.max(this.announcedQuarter, quarter);
    }
  }
}

/** Clipboard images arrive as `image.png`; each gets its own name so several pastes do not collide. */
function pastedName(file: File, index: number): string {
  const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  const extension = /\.[A-Za-z0-9]+$/.exec(file.name)?.[0] ?? `.${file.type.split('/')[1] || 'bin'}`;
  return `pasted-${stamp}${index ? `-${index + 1}` : ''}${extension}`;
}

function wireInputs(uploader: Uploader, addFiles: (files: File[]) => void): void {
  const input = byId<HTMLInputElement>('file-input');
  const pick = byId<HTMLButtonElement>('pick');
  const zone = byId('drop-zone');
  pick.addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    addFiles(Array.from(input.files ?? []));
    input.value = '';
  });

  // The whole frame accepts drops; the zone shows it. Without preventDefault the browser would open the file.
  let depth = 0;
  const hasFiles = (event: DragEvent) => Array.from(event.dataTransfer?.types ?? []).includes('Files');
  document.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    zone.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove('dragging');
  });
  document.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('drop', (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove('dragging');
    addFiles(Array.from(event.dataTransfer?.files ?? []));
  });

  document.addEventListener('paste', (event) => {
    const files = Array.from(event.clipboardData?.files ?? []);
    if (!files.length) return;
    event.preventDefault();
    addFiles(files.map((file, i) => new File([file], pastedName(file, i), { type: file.type })));
  });
  window.addEventListener('beforeunload', () => uploader.cancelAll());
}

function wireMacroEditor(ap: ConnectApi, uploader: Uploader): void {
  const confluence = ap.confluence;
  if (!confluence) return;
  byId('macro-actions').hidden = false;
  let parameters: Record<string, string> = {};
  confluence.getMacroData((data) => (parameters = data ?? {}));
  byId('insert').addEventListener('click', () => {
    confluence.saveMacro(parameters);
    confluence.closeMacroEditor();
  });
  byId('close').addEventListener('click', () => {
    uploader.cancelAll();
    confluence.closeMacroEditor();
  });
}

async function main(): Promise<void> {
  const ap = (window as { AP?: ConnectApi }).AP;
  if (!ap) {
    showNotice('This page works inside Confluence. Open it from a Confluence page.');
    return;
  }
  ap.theming?.initializeTheming?.();
  const query = new URLSearchParams(location.search);
  let contentId = query.get('contentId') ?? '';
  if (!/^\d+$/.test(contentId)) {
    const context = await viaCallback(ap.context.getContext.bind(ap.context)).catch(() => undefined);
    contentId = context?.confluence?.content?.id ?? '';
  }
  if (!/^\d+$/.test(contentId)) {
    showNotice('Save the page once, then attach files to it.');
    return;
  }

  const uploader = createUploader({
    relayUrl: document.body.dataset.relayUrl ?? location.origin,
    contentId,
    getToken: () => viaCallback(ap.context.getToken.bind(ap.context)),
  });
  const list = byId('files');
  const rows = new Map<UploadTask, UploadRow>();
  let resizeQueued = false;
  const resize = () => {
    if (resizeQueued || !ap.resize) return;
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      ap.resize?.();
    });
  };

  uploader.on('state', ({ task }) => {
    let row = rows.get(task);
    if (!row) {
      row = new UploadRow(task);
      rows.set(task, row);
      list.append(row.item);
    }
    row.update();
    if (task.state === 'cancelled') announce(`${task.name}: cancelled`);
    resize();
  });
  uploader.on('progress', ({ task }) => rows.get(task)?.update());
  uploader.on('done', ({ task }) => {
    const active = uploader.tasks.filter((t) => t.state === 'queued' || t.state === 'uploading' || t.state === 'relaying').length;
    announce(active ? `${task.name} uploaded. ${active} still uploading.` : `${task.name} uploaded. All uploads finished.`);
  });
  uploader.on('error', ({ task, error }) => announce(`${task.name} failed: ${error.message}`));

  const addFiles = (files: File[]) => {
    if (!files.length) return;
    uploader.add(files);
    announce(files.length === 1 ? `Uploading ${files[0].name}` : `Uploading ${files.length} files`);
  };
  wireInputs(uploader, addFiles);
  if (query.get('mode') === 'macro-editor') wireMacroEditor(ap, uploader);

  byId<HTMLButtonElement>('pick').disabled = false;
  document.body.dataset.state = 'ready';
  performance.mark('editor-ready');
  resize();
}

main().catch(() => showNotice('The uploader could not start. Reload the page and try again.'));
