import { DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { RelayConfig } from '../core/config';

/**
 * Encrypts the Forge OAuth token a ticket holds, bound to that ticket (the
 * ticket hash is the additional authenticated data / KMS encryption context),
 * so a copied table row is useless without the deployment's key and cannot
 * be moved to another ticket.
 */
export interface TokenSealer {
  seal(plaintext: string, ticketHash: string): Promise<string>;
  open(sealed: string, ticketHash: string): Promise<string>;
}

/** AES-256-GCM with a key given as base64 (the local runtime generates one per run). */
export function localTokenSealer(keyBase64: string): TokenSealer {
  const key = Buffer.from(keyBase64, 'base64');
  if (key.length !== 32) throw new Error('Invalid configuration: TOKEN_ENCRYPTION_KEY must be 32 bytes, base64-encoded');
  return {
    async seal(plaintext, ticketHash) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(ticketHash));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return `l1.${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`;
    },
    async open(sealed, ticketHash) {
      if (!sealed.startsWith('l1.')) throw new Error('not a locally sealed token');
      const raw = Buffer.from(sealed.slice(3), 'base64url');
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(ticketHash));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    },
  };
}

/** KMS Encrypt/Decrypt with the deployment's key and the ticket hash as encryption context. */
export function kmsTokenSealer(keyId: string): TokenSealer {
  const client = new KMSClient({});
  return {
    async seal(plaintext, ticketHash) {
      const result = await client.send(
        new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from(plaintext, 'utf8'), EncryptionContext: { ticket: ticketHash } }),
      );
      return `k1.${Buffer.from(result.CiphertextBlob as Uint8Array).toString('base64url')}`;
    },
    async open(sealed, ticketHash) {
      if (!sealed.startsWith('k1.')) throw new Error('not a KMS-sealed token');
      const result = await client.send(
        new DecryptCommand({ KeyId: keyId, CiphertextBlob: Buffer.from(sealed.slice(3), 'base64url'), EncryptionContext: { ticket: ticketHash } }),
      );
      return Buffer.from(result.Plaintext as Uint8Array).toString('utf8');
    },
  };
}

/** The sealer this deployment is configured for, if any (Forge tickets need one). */
export function tokenSealerFor(config: Pick<RelayConfig, 'tokenKmsKeyId' | 'tokenEncryptionKey'>): TokenSealer | undefined {
  if (config.tokenKmsKeyId) return kmsTokenSealer(config.tokenKmsKeyId);
  if (config.tokenEncryptionKey) return localTokenSealer(config.tokenEncryptionKey);
  return undefined;
}
