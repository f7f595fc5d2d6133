import { mapUpstreamStatus, parseAttachment, parseRetryAfter } from '../../functions/src/confluence/client';
import { numberedName } from '../../functions/src/confluence/attachments';
import { backoffMs } from '../../functions/src/uploads/relay-file';
import { knownTooLarge, type Tenant } from '../../functions/src/store/tenant-store';

describe("reading Confluence's answers", () => {
  const answer = (fileSize: unknown) =>
    JSON.stringify({
      results: [
        {
          id: 'att1',
          title: 'a.pdf',
          version: { number: 3 },
          extensions: { mediaType: 'application/pdf', fileSize },
          _links: { download: '/download/attachments/1/a.pdf?version=3&api=v2' },
        },
      ],
      _links: { base: 'https://x.atlassian.net/wiki' },
    });

  it.each([[1234], ['1234']])('reads fileSize %p as the number 1234', (fileSize) => {
    expect(parseAttachment('a.pdf', answer(fileSize), 'https://x.atlassian.net/wiki')).toEqual({
      name: 'a.pdf',
      id: 'att1',
      title: 'a.pdf',
      mediaType: 'application/pdf',
      fileSize: 1234,
      version: 3,
      downloadUrl: 'https://x.atlassian.net/wiki/download/attachments/1/a.pdf?version=3&api=v2',
    });
  });

  it.each<[number, string, string, number, boolean]>([
    [400, 'Cannot add a new attachment with same file name as an existing attachment: a.pdf', 'name_conflict', 409, true],
    [401, '', 'upstream_unauthorized', 502, true],
    [403, '', 'forbidden', 403, true],
    [404, '', 'content_not_found', 404, true],
    [413, '', 'exceeds_site_limit', 413, true],
    [429, '', 'rate_limited', 429, true],
    [503, '', 'upstream_unavailable', 503, true],
    [500, '', 'upstream_error', 502, false],
    [502, '', 'upstream_error', 502, false],
    [400, 'something else', 'upstream_error', 502, true],
  ])('maps Confluence %i (%s) to %s / %i (definite: %s)', (status, body, code, relayStatus, definite) => {
    expect(mapUpstreamStatus(status, body, {})).toMatchObject({ code, status: relayStatus, definite });
  });

  it('passes Retry-After on to the browser for 429 and 503', () => {
    expect(mapUpstreamStatus(429, '', { 'retry-after': '17' }).headers).toEqual({ 'retry-after': '17' });
    expect(mapUpstreamStatus(503, '', {}).headers).toEqual({ 'retry-after': '5' });
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(1_000_000 + 7000).toUTCString(), 1_000_000)).toBe(7000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});

describe('retry and naming helpers', () => {
  it('backs off exponentially with full jitter, capped', () => {
    expect(backoffMs(1, () => 0)).toBe(0);
    expect(backoffMs(1, () => 0.999)).toBeLessThan(500);
    expect(backoffMs(3, () => 0.999)).toBeLessThan(2000);
    expect(backoffMs(10, () => 0.999)).toBeLessThan(4000);
  });

  it.each([
    ['report.pdf', 2, 'report (2).pdf'],
    ['archive.tar.gz', 3, 'archive.tar (3).gz'],
    ['README', 2, 'README (2)'],
    ['.env', 2, '.env (2)'],
  ])('names copy %s #%i as %s', (name, n, expected) => {
    expect(numberedName(name, n)).toBe(expected);
  });

  it('remembers a site limit for a day, and forgets it when a larger file passed', () => {
    const tenant = { siteLimit: { refusedBytes: 1000, refusedAt: 10_000 } } as Tenant;
    expect(knownTooLarge(tenant, 999, 10_100)).toBe(false);
    expect(knownTooLarge(tenant, 1000, 10_100)).toBe(true);
    expect(knownTooLarge(tenant, 5000, 10_000 + 86_401)).toBe(false);
    expect(knownTooLarge({ siteLimit: { ...tenant.siteLimit, acceptedBytes: 2000 } } as Tenant, 1500, 10_100)).toBe(false);
  });
});
