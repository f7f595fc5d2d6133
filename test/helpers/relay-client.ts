/** A client that knows only the relay's HTTP contract (shared/spec/relay-contract.md). */
export interface DeclaredFile {
  name: string;
  size: number;
  type?: string;
}

export interface UploadPart {
  name: string;
  bytes: Buffer;
  type?: string;
}

export class RelayClient {
  constructor(readonly baseUrl: string) {}

  install(request: { body: string; authorization: string }, event: 'installed' | 'uninstalled' = 'installed'): Promise<Response> {
    return fetch(`${this.baseUrl}/lifecycle/${event}`, {
      method: 'POST',
      headers: { authorization: request.authorization, 'content-type': 'application/json' },
      body: request.body,
    });
  }

  requestTicket(authorization: string | undefined, body: unknown): Promise<Response> {
    return fetch(`${this.baseUrl}/tickets`, {
      method: 'POST',
      headers: { ...(authorization ? { authorization } : {}), 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  }

  /** Gets a ticket or fails the test with the relay's answer. */
  async ticket(contextToken: string, contentId: string, files: DeclaredFile[], extra: Record<string, unknown> = {}): Promise<string> {
    const response = await this.requestTicket(`JWT ${contextToken}`, { contentId, files, ...extra });
    const body = (await response.json()) as { ticket?: string };
    if (response.status !== 201 || !body.ticket) throw new Error(`ticket refused: ${response.status} ${JSON.stringify(body)}`);
    return body.ticket;
  }

  upload(ticket: string | undefined, parts: UploadPart[], fields: Record<string, string> = {}): Promise<Response> {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    for (const part of parts) form.append('file', new Blob([new Uint8Array(part.bytes)], { type: part.type ?? 'application/octet-stream' }), part.name);
    return fetch(`${this.baseUrl}/uploads`, {
      method: 'POST',
      headers: ticket ? { authorization: `Bearer ${ticket}` } : {},
      body: form,
    });
  }

  uploadRaw(ticket: string, body: Buffer | string, contentType: string | undefined): Promise<Response> {
    return fetch(`${this.baseUrl}/uploads`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ticket}`, ...(contentType ? { 'content-type': contentType } : {}) },
      body: typeof body === 'string' ? body : new Uint8Array(body),
    });
  }
}

/** Declares parts as files of a ticket request. */
export function declare(parts: UploadPart[]): DeclaredFile[] {
  return parts.map((part) => ({ name: part.name, size: part.bytes.length, type: part.type ?? 'application/octet-stream' }));
}
