/**
 * SSRF guard for every URL the relay calls on a tenant's behalf: the host must
 * match an allow-list pattern, where `*` stands for exactly one DNS label
 * (`*.atlassian.net` matches `acme.atlassian.net`, not `a.b.atlassian.net` nor
 * `atlassian.net`), and the scheme must be https unless http is allowed (local).
 */
export function hostMatches(hostname: string, pattern: string): boolean {
  const hostLabels = hostname.toLowerCase().split('.');
  const patternLabels = pattern.toLowerCase().split('.');
  if (hostLabels.length !== patternLabels.length) return false;
  return patternLabels.every((label, i) => label === '*' ? /^[a-z0-9-]+$/.test(hostLabels[i]) : label === hostLabels[i]);
}

export function isAllowedUrl(rawUrl: string, patterns: readonly string[], allowHttp: boolean): boolean {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    return false;
  }
  if (url.protocol !== 'https:' && !(allowHttp && url.protocol === 'http:')) return false;
  // Credentials in a base URL have no business there and could confuse a proxy.
  if (url.username || url.password || url.search || url.hash) return false;
  return patterns.some((pattern) => hostMatches(url.hostname, pattern));
}
