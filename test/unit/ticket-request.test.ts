import { parseTicketRequest } from '../../functions/src/tickets/ticket-request';
import { uploadLimits } from '../../functions/src/uploads/limits';
import { hostMatches, isAllowedUrl } from '../../functions/src/core/hosts';
import { loadConfig } from '../../functions/src/core/config';

const limits = uploadLimits({ maxFileBytes: 1000, maxFilesPerTicket: 3, directMaxBytes: 500 });
const file = { name: 'report.pdf', size: 10, type: 'application/pdf' };

describe('ticket request validation', () => {
  it('accepts a good request and fills defaults', () => {
    expect(parseTicketRequest({ contentId: '65538', files: [{ name: 'a.bin', size: 0 }] }, limits)).toEqual({
      contentId: '65538',
      files: [{ name: 'a.bin', size: 0, type: 'application/octet-stream' }],
      comment: undefined,
      minorEdit: true,
    });
  });

  it.each<[string, Record<string, unknown>, number]>([
    ['no contentId', { files: [file] }, 400],
    ['non-numeric contentId', { contentId: '../x', files: [file] }, 400],
    ['numeric contentId as number', { contentId: 65538, files: [file] }, 400],
    ['empty file list', { contentId: '1', files: [] }, 400],
    ['files not a list', { contentId: '1', files: 'a' }, 400],
    ['too many files', { contentId: '1', files: [1, 2, 3, 4].map((i) => ({ ...file, name: `${i}` })) }, 400],
    ['file over MAX_FILE_BYTES', { contentId: '1', files: [{ ...file, size: 1001 }] }, 413],
    ['negative size', { contentId: '1', files: [{ ...file, size: -1 }] }, 400],
    ['fractional size', { contentId: '1', files: [{ ...file, size: 1.5 }] }, 400],
    ['missing name', { contentId: '1', files: [{ size: 1 }] }, 400],
    ['name with CR/LF', { contentId: '1', files: [{ ...file, name: 'a\r\nb.txt' }] }, 400],
    ['name with NUL', { contentId: '1', files: [{ ...file, name: 'a\u0000b' }] }, 400],
    ['name with a path', { contentId: '1', files: [{ ...file, name: '../etc/passwd' }] }, 400],
    ['name with backslash', { contentId: '1', files: [{ ...file, name: 'a\\b' }] }, 400],
    ['name too long', { contentId: '1', files: [{ ...file, name: 'n'.repeat(256) }] }, 400],
    ['duplicate names', { contentId: '1', files: [file, file] }, 400],
    ['bad media type', { contentId: '1', files: [{ ...file, type: 'text/html\r\nX-Evil: 1' }] }, 400],
    ['comment not a string', { contentId: '1', files: [file], comment: 5 }, 400],
    ['minorEdit not a boolean', { contentId: '1', files: [file], minorEdit: 'yes' }, 400],
  ])('refuses %s', (_name, body, status) => {
    expect(() => parseTicketRequest(body, limits)).toThrow(expect.objectContaining({ status }));
  });
});

describe('tenant host allow-list (SSRF guard)', () => {
  it.each([
    ['acme.atlassian.net', '*.atlassian.net', true],
    ['ACME.atlassian.net', '*.atlassian.net', true],
    ['a.b.atlassian.net', '*.atlassian.net', false],
    ['atlassian.net', '*.atlassian.net', false],
    ['acme.atlassian.net.evil.com', '*.atlassian.net', false],
    ['evilatlassian.net', '*.atlassian.net', false],
  ])('%s against %s: %s', (host, pattern, expected) => {
    expect(hostMatches(host, pattern)).toBe(expected);
  });

  it.each([
    ['https://acme.atlassian.net/wiki', false, true],
    ['http://acme.atlassian.net/wiki', false, false],
    ['http://acme.atlassian.net/wiki', true, true],
    ['https://user:pw@acme.atlassian.net/wiki', false, false],
    ['https://169.254.169.254/latest', false, false],
    ['not a url', false, false],
  ])('%s (http allowed: %s) is allowed: %s', (url, allowHttp, expected) => {
    expect(isAllowedUrl(url, ['*.atlassian.net'], allowHttp)).toBe(expected);
  });
});

describe('configuration', () => {
  it('uses the contract defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      relayBaseUrl: 'http://localhost:3000',
      allowedTenantHosts: ['*.atlassian.net'],
      allowHttpTenants: false,
      uploadAs: 'user',
      ticketTtlSeconds: 300,
      maxFileBytes: 104857600,
      maxFilesPerTicket: 20,
      directMaxBytes: 4194304,
      onNameConflict: 'version',
      allowedForgeApiHosts: ['api.atlassian.com'],
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it.each([
    ['TICKET_TTL_SECONDS', 'soon'],
    ['MAX_FILE_BYTES', '-5'],
    ['UPLOAD_AS', 'admin'],
    ['ON_NAME_CONFLICT', 'overwrite'],
    ['ALLOW_HTTP_TENANTS', 'maybe'],
    ['RELAY_BASE_URL', 'not a url'],
    ['ALLOWED_TENANT_HOSTS', 'bad host!'],
  ])('fails at load, naming %s, for %s', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });
});
