/** The parts of Atlassian Connect's JavaScript API (`AP`, from all.js) the editor page uses. */
export interface ConnectContext {
  confluence?: { content?: { id?: string; type?: string }; space?: { key?: string } };
}

export interface ConnectApi {
  context: {
    getToken(callback?: (token: string) => void): Promise<string> | void;
    getContext(callback?: (context: ConnectContext) => void): Promise<ConnectContext> | void;
  };
  confluence?: {
    saveMacro(parameters: Record<string, string>, body?: string): void;
    closeMacroEditor(): void;
    getMacroData(callback: (parameters: Record<string, string> | undefined) => void): void;
  };
  theming?: { initializeTheming?(): void };
  resize?(): void;
}

/**
 * Calls an AP function that takes a callback (every all.js version) and may
 * also return a promise (newer ones), whichever answers first.
 */
export function viaCallback<T>(call: (callback: (value: T) => void) => Promise<T> | void, timeoutMs = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('Confluence did not answer.')), timeoutMs);
    const done = (value: T) => {
      clearTimeout(timer);
      resolve(value);
    };
    try {
      const answer = call(done);
      if (answer && typeof answer.then === 'function') answer.then(done, reject);
    } catch (error) {
      reject(error);
    }
  });
}
