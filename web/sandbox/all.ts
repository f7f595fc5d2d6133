/**
 * The sandbox's replacement for Atlassian's all.js (served at
 * `/sandbox/all.js`, named by CONNECT_JS_URL): defines `window.AP` with the
 * calls the editor page uses, each a postMessage round trip to the hosting
 * sandbox page, as the real all.js does with Confluence. Like all.js it
 * also reports the iframe's content height so the host can size the frame.
 */
import { PROTOCOL, type ApCall, type ApEvent, type ApRequest, type ApResponse } from './protocol';

type Callback = (value: never) => void;

const hostOrigin = new URLSearchParams(location.search).get('xdm_e') ?? '';
const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
let nextId = 1;
let themed = false;

function request<T>(call: ApCall, args: unknown[] = []): Promise<T> {
  const id = nextId++;
  const message: ApRequest = { protocol: PROTOCOL, id, call, args };
  return new Promise<T>((resolve, reject) => {
    pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
    window.parent.postMessage(message, hostOrigin);
  });
}

/** all.js style: the callback gets the answer, and a promise is returned as well. */
function withCallback<T>(call: ApCall, callback?: Callback, args: unknown[] = []): Promise<T> {
  const answer = request<T>(call, args);
  if (callback) answer.then((value) => (callback as (value: T) => void)(value));
  return answer;
}

function applyColorMode(mode: string): void {
  document.documentElement.setAttribute('data-color-mode', mode);
}

window.addEventListener('message', (event: MessageEvent<ApResponse | ApEvent>) => {
  // Only the host that framed us, on the origin it was named by.
  if (event.source !== window.parent || event.origin !== hostOrigin || event.data?.protocol !== PROTOCOL) return;
  const data = event.data;
  if ('event' in data) {
    if (data.event === 'theme' && themed) applyColorMode(data.colorMode);
    return;
  }
  const waiter = pending.get(data.id);
  if (!waiter) return;
  pending.delete(data.id);
  if (data.error !== undefined) waiter.reject(new Error(data.error));
  else waiter.resolve(data.result);
});

let lastHeight = 0;
function reportHeight(): void {
  const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
  if (height === lastHeight) return;
  lastHeight = height;
  void request('resize', ['100%', `${height}px`]);
}

const AP = {
  context: {
    getToken: (callback?: Callback) => withCallback<string>('context.getToken', callback),
    getContext: (callback?: Callback) => withCallback<unknown>('context.getContext', callback),
  },
  confluence: {
    saveMacro: (parameters: Record<string, string>, body?: string) => void request('confluence.saveMacro', [parameters, body]),
    closeMacroEditor: () => void request('confluence.closeMacroEditor'),
    getMacroData: (callback: Callback) => void withCallback('confluence.getMacroData', callback),
  },
  theming: {
    initializeTheming: () => {
      themed = true;
      void request<'light' | 'dark'>('theming.initializeTheming').then(applyColorMode);
    },
  },
  resize: () => reportHeight(),
};

(window as unknown as { AP: typeof AP }).AP = AP;

// all.js sizes the iframe to its content by itself.
new ResizeObserver(reportHeight).observe(document.documentElement);
