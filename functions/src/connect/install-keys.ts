import { AppError, unauthorized } from '../core/errors';

/** Connect install key ids are UUIDs; anything outside this set never reaches a URL. */
const KID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;
const MAX_CACHED_KEYS = 64;
const KEY_FETCH_TIMEOUT_MS = 5_000;

export type InstallKeyFetcher = (kid: string) => Promise<string>;

/**
 * Fetches the PEM public key that signed a lifecycle callback from
 * `{keysUrl}/{kid}`, caching keys for the life of the container (Atlassian
 * rotates by issuing new kids, so a cached kid never changes meaning).
 */
export function installKeyFetcher(keysUrl: string, fetchImpl: typeof fetch = fetch): InstallKeyFetcher {
  const cache = new Map<string, string>();
  return async (kid) => {
    if (!KID_PATTERN.test(kid)) throw unauthorized('bad_kid');
    const cached = cache.get(kid);
    if (cached) return cached;

    let response: Response;
    try {
      response = await fetchImpl(`${keysUrl}/${kid}`, { signal: AbortSignal.timeout(KEY_FETCH_TIMEOUT_MS) });
    } catch (cause) {
      throw new AppError(503, 'key_service_unavailable', 'The install key service could not be reached.', {
        cause,
        headers: { 'retry-after': '5' },
      });
    }
    if (response.status === 404 || response.status === 400) throw unauthorized('unknown_kid');
    if (!response.ok) {
      throw new AppError(503, 'key_service_unavailable', 'The install key service answered with an error.', {
        headers: { 'retry-after': '5' },
        reason: `key_service_status_${response.status}`,
      });
    }
    const pem = (await response.text()).trim();
    if (!pem.startsWith('-----BEGIN PUBLIC KEY-----')) throw unauthorized('key_not_pem');
    if (cache.size >= MAX_CACHED_KEYS) cache.delete(cache.keys().next().value as string);
    cache.set(kid, pem);
    return pem;
  };
}
