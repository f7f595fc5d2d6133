/**
 * The relay's configuration: read from the environment once, validated, frozen.
 * A missing or malformed value throws at module load (cold start) with the
 * variable's name, never in the middle of a request. The names and defaults are
 * the contract's ("Local run" table).
 */
export type UploadAs = 'user' | 'app';
export type NameConflictPolicy = 'version' | 'rename' | 'fail';

export interface RelayConfig {
  readonly relayBaseUrl: string;
  readonly appKey: string;
  readonly appName: string;
  readonly connectInstallKeysUrl: string;
  readonly allowedTenantHosts: readonly string[];
  readonly allowHttpTenants: boolean;
  readonly oauthTokenUrl: string;
  readonly uploadAs: UploadAs;
  readonly ticketTtlSeconds: number;
  readonly maxFileBytes: number;
  readonly maxFilesPerTicket: number;
  readonly directMaxBytes: number;
  readonly onNameConflict: NameConflictPolicy;
  readonly forgeAppIds: readonly string[];
  readonly forgeJwksUrl: string;
  readonly allowedForgeApiHosts: readonly string[];
  readonly tableName: string;
  readonly stagingBucket?: string;
  readonly dynamodbEndpoint?: string;
  readonly s3Endpoint?: string;
  readonly upstreamTimeoutMs: number;
  readonly apiCallTimeoutMs: number;
  readonly completeWaitMs: number;
  readonly logFileNames: boolean;
  /** Name (or ARN) of the function that relays staged files, invoked asynchronously. */
  readonly stagedRelayFunction?: string;
  /** Lambda API endpoint override (the local runtime's emulator). */
  readonly lambdaEndpoint?: string;
  /** KMS key that encrypts Forge OAuth tokens held by tickets (AWS). */
  readonly tokenKmsKeyId?: string;
  /** Or a 32-byte AES key, base64 (the local runtime generates one per run). */
  readonly tokenEncryptionKey?: string;
}

/** Confluence's REST endpoints cap a request at 2 GB (CONFCLOUD-77566). */
export const CONFLUENCE_MAX_REQUEST_BYTES = 2 * 1024 ** 3;

type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  constructor(name: string, problem: string) {
    super(`Invalid configuration: ${name} ${problem}`);
    this.name = 'ConfigError';
  }
}

function readString(env: Env, name: string, fallback?: string): string {
  const value = env[name]?.trim();
  if (value) return value;
  if (fallback !== undefined) return fallback;
  throw new ConfigError(name, 'is required');
}

function readOptional(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function readInt(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function readBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (!raw) return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function readEnum<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

function readList(env: Env, name: string, fallback: readonly string[]): string[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return [...fallback];
  return raw.split(',').map((item) => item.trim()).filter(Boolean);
}

function readUrl(env: Env, name: string, fallback?: string): string {
  const value = readString(env, name, fallback);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(name, `must be an absolute URL, got "${value}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(name, 'must be an http(s) URL');
  if (url.search || url.hash) throw new ConfigError(name, 'must not have a query or fragment');
  // Keep the path prefix (a stage or a custom-domain mapping) but no trailing slash.
  return value.replace(/\/+$/, '');
}

const HOST_PATTERN = /^(\*|[a-z0-9-]+)(\.(\*|[a-z0-9-]+))*$/i;

function readHostPatterns(env: Env, name: string, fallback: readonly string[]): string[] {
  const patterns = readList(env, name, fallback).map((p) => p.toLowerCase());
  for (const pattern of patterns) {
    if (!HOST_PATTERN.test(pattern)) throw new ConfigError(name, `has an invalid host pattern "${pattern}"`);
  }
  return patterns;
}

/** Builds and validates a configuration from an environment (tests pass their own). */
export function loadConfig(env: Env = process.env): RelayConfig {
  const port = readInt(env, 'PORT', 3000, 0, 65535);
  const maxFileBytes = readInt(env, 'MAX_FILE_BYTES', 104_857_600, 1, CONFLUENCE_MAX_REQUEST_BYTES);
  const config: RelayConfig = {
    relayBaseUrl: readUrl(env, 'RELAY_BASE_URL', `http://localhost:${port}`),
    appKey: readString(env, 'APP_KEY', 'confluence-upload-relay'),
    appName: readString(env, 'APP_NAME', 'Upload relay'),
    connectInstallKeysUrl: readUrl(env, 'CONNECT_INSTALL_KEYS_URL', 'https://connect-install-keys.atlassian.com'),
    allowedTenantHosts: readHostPatterns(env, 'ALLOWED_TENANT_HOSTS', ['*.atlassian.net']),
    allowHttpTenants: readBool(env, 'ALLOW_HTTP_TENANTS', false),
    oauthTokenUrl: readUrl(
      env,
      'OAUTH_TOKEN_URL',
      'https://oauth-2-authorization-server.services.atlassian.com/oauth2/token',
    ),
    uploadAs: readEnum(env, 'UPLOAD_AS', ['user', 'app'] as const, 'user'),
    ticketTtlSeconds: readInt(env, 'TICKET_TTL_SECONDS', 300, 10, 3600),
    maxFileBytes,
    maxFilesPerTicket: readInt(env, 'MAX_FILES_PER_TICKET', 20, 1, 100),
    directMaxBytes: readInt(env, 'DIRECT_MAX_BYTES', 4_194_304, 1, 4_718_592),
    onNameConflict: readEnum(env, 'ON_NAME_CONFLICT', ['version', 'rename', 'fail'] as const, 'version'),
    forgeAppIds: readList(env, 'FORGE_APP_IDS', []),
    forgeJwksUrl: readUrl(env, 'FORGE_JWKS_URL', 'https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json'),
    allowedForgeApiHosts: readHostPatterns(env, 'ALLOWED_FORGE_API_HOSTS', ['api.atlassian.com']),
    tableName: readString(env, 'TABLE_NAME', 'upload-relay'),
    stagingBucket: readOptional(env, 'STAGING_BUCKET'),
    dynamodbEndpoint: readOptional(env, 'DYNAMODB_ENDPOINT'),
    s3Endpoint: readOptional(env, 'S3_ENDPOINT'),
    upstreamTimeoutMs: readInt(env, 'UPSTREAM_TIMEOUT_MS', 25_000, 100, 900_000),
    apiCallTimeoutMs: readInt(env, 'API_CALL_TIMEOUT_MS', 5_000, 100, 60_000),
    completeWaitMs: readInt(env, 'COMPLETE_WAIT_MS', 25_000, 0, 27_000),
    logFileNames: readBool(env, 'LOG_FILE_NAMES', false),
    stagedRelayFunction: readOptional(env, 'STAGED_RELAY_FUNCTION'),
    lambdaEndpoint: readOptional(env, 'LAMBDA_ENDPOINT'),
    tokenKmsKeyId: readOptional(env, 'TOKEN_KMS_KEY_ID'),
    tokenEncryptionKey: readOptional(env, 'TOKEN_ENCRYPTION_KEY'),
  };
  if (config.forgeAppIds.length > 0 && !config.tokenKmsKeyId && !config.tokenEncryptionKey) {
    throw new ConfigError('FORGE_APP_IDS', 'needs TOKEN_KMS_KEY_ID or TOKEN_ENCRYPTION_KEY to encrypt the Forge tokens tickets hold');
  }
  return Object.freeze(config);
}

let cached: RelayConfig | undefined;

/** The process-wide configuration, read on first use (module load of a handler). */
export function getConfig(): RelayConfig {
  cached ??= loadConfig();
  return cached;
}
