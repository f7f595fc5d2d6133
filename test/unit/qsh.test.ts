import { createCanonicalRequest, fromMethodAndUrl } from 'atlassian-jwt';
import { productQsh, relayQsh } from '../../functions/src/connect/jwt';

// Vectors published with atlassian-jwt (shared/reference/atlassian.md §7).
describe('Connect query string hash', () => {
  it.each([
    ['GET', '/path', '799be84a7fa35570087163c0cd9af3abff7ac05c2c12ba0bb1d7eebc984b3ac2'],
    ['GET', '/', 'c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239'],
    [
      'GET',
      '/hello-world?lic=none&tz=Australia%2FSydney&cp=%2Fjira&user_key=&loc=en-US&user_id=&jwt=abc&xdm_e=http%3A%2F%2Fstorm%3A2990&xdm_c=channel-servlet-hello-world&xdm_p=1',
      '8063ff4ca1e41df7bc90c8ab6d0f6207d491cf6dad7c66ea797b4614b71922e9',
    ],
  ])('%s %s hashes to the published value', (method, target, expected) => {
    expect(relayQsh(method, target, 'https://relay.example.com')).toBe(expected);
  });

  it('strips the relay base URL path prefix (a stage or domain mapping)', () => {
    expect(relayQsh('POST', '/prod/lifecycle/installed', 'https://relay.example.com/prod')).toBe(
      relayQsh('POST', '/lifecycle/installed', 'https://relay.example.com'),
    );
  });

  it('strips the tenant context path /wiki for calls to Confluence', () => {
    const url = 'https://x.atlassian.net/wiki/rest/api/content/123/child/attachment';
    expect(productQsh('POST', url, 'https://x.atlassian.net/wiki')).toBe('ad4b164ce760af71cab46089e0b372921a6a3fc48259ead5141824eb891d83c3');
    // Without stripping, Confluence would refuse the token.
    expect(productQsh('POST', url, 'https://x.atlassian.net')).toBe('70f21eede3dff591946b6b6f0e0d16fba45de706f810edc76f69aef7fb1d5372');
    expect(productQsh('PUT', `${url}?status=current`, 'https://x.atlassian.net/wiki')).toBe(
      'c347718d91ccc360db0d83c14138755d0a11fcb690b9f2149399b76daa4fe879',
    );
  });

  it.each([
    ['GET', '/upload/?b=2&a=1&a=0&jwt=xyz&c=hello world&d=a+b&e=*~!', 'GET&/upload&a=0,1&b=2&c=hello%20world&d=a%20b&e=%2A~%21'],
    ['GET', '/hello-world?a&b=foo&c', 'GET&/hello-world&a=&b=foo&c='],
    ['POST', '/rest/api/2/project&a=b?x=y', 'POST&/rest/api/2/project%26a=b&x=y'],
  ])('canonicalises %s %s', (method, target, canonical) => {
    expect(createCanonicalRequest(fromMethodAndUrl(method, target), false)).toBe(canonical);
  });

  it('distinguishes a path & from a query separator', () => {
    expect(relayQsh('POST', '/rest/api/2/project&a=b?x=y', 'https://r.example')).not.toBe(
      relayQsh('POST', '/rest/api/2/project?a=b&x=y', 'https://r.example'),
    );
  });
});
