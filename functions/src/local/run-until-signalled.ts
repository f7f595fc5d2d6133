import { muteSdkNodeVersionWarning } from './quiet';

/**
 * The entry point of `npm run relay` and `npm start`: starts something, prints
 * how to reach it, and closes it cleanly on SIGTERM or Ctrl-C (temporary
 * directories and embedded servers go with it).
 */
export function runUntilSignalled<T extends { close(): Promise<void> }>(
  name: string,
  start: () => Promise<T>,
  describe: (started: T) => string[],
): void {
  muteSdkNodeVersionWarning();
  start().then(
    (started) => {
      process.stdout.write(`${describe(started).join('\n')}\n`);
      const stop = () => {
        started.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    },
    (error: Error) => {
      process.stderr.write(`${name} failed to start: ${error.message}\n`);
      process.exit(1);
    },
  );
}
