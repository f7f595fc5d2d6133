/**
 * The one error type thrown inside the relay. `status` and `code` are what the
 * caller sees (see the contract's error shape); `message` is shown only when
 * `expose` is true, otherwise a generic sentence for the status goes out and the
 * precise reason stays in the log.
 */
export class AppError extends Error {
  readonly status: number;
  readonly code: string;
  readonly expose: boolean;
  readonly headers: Record<string, string>;
  /** Machine-readable reason kept for logs and metrics (never sent to the caller). */
  readonly reason?: string;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { expose?: boolean; cause?: unknown; headers?: Record<string, string>; reason?: string } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.status = status;
    this.code = code;
    this.expose = options.expose ?? status < 500;
    this.headers = options.headers ?? {};
    this.reason = options.reason;
  }
}

/**
 * Every authentication failure leaves as the same bare 401; `reason` says in
 * the log which check failed (bad signature, expired, unknown issuer...).
 */
export function unauthorized(reason: string, cause?: unknown): AppError {
  return new AppError(401, 'unauthorized', 'Missing or invalid credentials.', { reason, cause });
}

export function badRequest(code: string, message: string, cause?: unknown): AppError {
  return new AppError(400, code, message, { cause });
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}
