/**
 * The Confluence stand-in in a process of its own (so a benchmark's RSS does
 * not include what the stand-in holds). Prints one JSON line with what the
 * parent needs, then runs until its stdin closes.
 */
import readline from 'node:readline';
import { startConfluenceStandIn } from '../test/confluence-stand-in/stand-in';

async function main(): Promise<void> {
  const standIn = await startConfluenceStandIn({ bytesPerSecond: Number(process.env.BYTES_PER_SECOND) || undefined });
  const site = standIn.site();
  const pages = (process.env.PAGES ?? '1001').split(',');
  for (const page of pages) site.addPage(page);
  process.stdout.write(
    `${JSON.stringify({ origin: standIn.origin, baseUrl: site.baseUrl, clientKey: site.clientKey, sharedSecret: site.sharedSecret })}\n`,
  );
  // A line "reset" on stdin forgets the pages' attachments (so stored bytes do
  // not pile up between benchmark runs) and is answered "ok".
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() !== 'reset') return;
    for (const page of pages) {
      site.removePage(page);
      site.addPage(page);
    }
    process.stdout.write('ok\n');
  });
  process.stdin.on('end', () => {
    standIn.close().then(() => process.exit(0));
  });
}

main().catch((error: Error) => {
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
});
