/**
 * Node 20 defines Symbol.dispose / Symbol.asyncDispose only on its main
 * realm's Symbol; jest runs test code in a vm context whose Symbol lacks
 * them. playwright-core declares `[Symbol.dispose]()` methods and looks them
 * up through esbuild's helper (`Symbol[name] ?? Symbol.for('Symbol.' + name)`),
 * so without these the two disagree and, for example, clicks into
 * out-of-process iframes fail with "Object not disposable". Imported before
 * playwright-core.
 */
for (const name of ['dispose', 'asyncDispose'] as const) {
  if (!(name in Symbol)) Object.defineProperty(Symbol, name, { value: Symbol.for(`Symbol.${name}`) });
}
export {};
