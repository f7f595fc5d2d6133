/**
 * The Confluence stand-in in a process of its own (so a benchmark's RSS does
 * not include what the stand-in holds). Prints one JSON line with what the
 * parent needs, then runs until its stdin closes.
 */
import { startConfluenceStandIn } from '../test/confluence-stand-in/stand-in';

async function main(): Promise<void> {
  const standIn = await startConfluenceStandIn({ bytesPerSecond: Number(process.env.BYTES_PER_SECOND) || undefined });
  const site = standIn.site();
  for (const page of (process.env.PAGES ?? '1001').split(',')) site.addPage(page);
  process.stdout.write(
    `${JSON.stringify({ origin: standIn.origin, baseUrl: site.baseUrl, clientKey: site.clientKey, sharedSecret: site.sharedSecret })}\n`,
  );
  process.stdin.resume();
  process.stdin.on('end', () => {
    standIn.close().then(() => process.exit(0));
  });
}

main().catch((error: Error) => {
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
});
