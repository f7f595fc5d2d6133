/**
 * The AWS SDK warns on Node 20 that future versions need Node 22 (Lambda runs
 * 22); locally that warning would print once per bundle, so it alone is muted.
 */
export function muteSdkNodeVersionWarning(): void {
  const listeners = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    if (warning.name === 'NodeVersionSupportWarning' || warning.message.startsWith('NodeVersionSupportWarning')) return;
    for (const listener of listeners) listener(warning);
  });
}

