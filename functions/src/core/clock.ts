/** The clock, as a seam: tests and the emulator may move it. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
