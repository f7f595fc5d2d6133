/**
 * Mutations of valid credentials for the fuzz properties: what an attacker can
 * do to a token they hold (or saw) without knowing the key behind it.
 *
 * `FUZZ_SCALE` multiplies every property's run count: `npm test` runs the
 * bounded default, `npm run fuzz` many times more.
 */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';

export const FUZZ_SCALE = Math.max(1, Number(process.env.FUZZ_SCALE ?? 1) || 1);

/** A property's run count, scaled by FUZZ_SCALE. */
export function runs(base: number): number {
  return Math.ceil(base * FUZZ_SCALE);
}

/** A test's time budget, scaled like its run counts. */
export function budgetMs(baseMs: number): number {
  return baseMs * FUZZ_SCALE;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function b64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decodeJson(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** One way of changing a token; `apply` gets the token and the other valid tokens it may borrow from. */
export interface Mutation {
  kind: string;
  apply(token: string, others: readonly string[]): string;
}

const claimValues = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.integer(),
  fc.constantFrom(0, -1, 2 ** 53, 1e300, Number.MAX_SAFE_INTEGER),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('context-qsh', 'admin', '', '*', 'https://evil.example.com', '../', 'HS256'),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
);

/** Changing one bit of one character (may leave the base64url alphabet). */
const bitFlip = fc.record({ at: fc.nat(), bit: fc.integer({ min: 0, max: 6 }) }).map(
  ({ at, bit }): Mutation => ({
    kind: 'bit flip',
    apply(token) {
      const i = at % token.length;
      return token.slice(0, i) + String.fromCharCode(token.charCodeAt(i) ^ (1 << bit)) + token.slice(i + 1);
    },
  }),
);

/** Replacing one character by another base64url character. */
const charSwap = fc.record({ at: fc.nat(), by: fc.integer({ min: 0, max: 63 }) }).map(
  ({ at, by }): Mutation => ({
    kind: 'character replaced',
    apply(token) {
      const i = at % token.length;
      return token.slice(0, i) + B64URL[by] + token.slice(i + 1);
    },
  }),
);

/** Cutting the token short, or adding to it. */
const truncation = fc.nat().map(
  (at): Mutation => ({
    kind: 'truncation',
    apply: (token) => token.slice(0, at % token.length),
  }),
);
const extension = fc.string({ unit: fc.constantFrom(...B64URL, '.', '=', ' ', '\t'), minLength: 1, maxLength: 8 }).map(
  (tail): Mutation => ({ kind: 'appended', apply: (token) => token + tail }),
);

/** Reordering, dropping, duplicating or borrowing segments (from another valid token). */
const segmentSwap = fc
  .record({
    order: fc.constantFrom([1, 0, 2], [0, 2, 1], [2, 1, 0], [1, 2, 0], [2, 0, 1], [0, 1], [0, 0, 2], [0, 1, 1], [0, 1, 2, 2], [0, 1, 2, 0]),
    borrow: fc.option(fc.record({ from: fc.nat(), segment: fc.integer({ min: 0, max: 2 }) }), { nil: undefined }),
  })
  .map(
    ({ order, borrow }): Mutation => ({
      kind: borrow ? 'segment borrowed' : 'segments reordered',
      apply(token, others) {
        const segments = token.split('.');
        if (borrow && others.length > 0) {
          const donor = others[borrow.from % others.length].split('.');
          segments[borrow.segment] = donor[borrow.segment] ?? '';
          return segments.join('.');
        }
        return order.map((i) => segments[i] ?? '').join('.');
      },
    }),
  );

/** Editing claims without re-signing (the signature is kept). */
const claimEdit = fc
  .record({ claim: fc.constantFrom('iss', 'sub', 'exp', 'iat', 'nbf', 'qsh', 'aud', 'context', 'clientKey', 'kid'), value: claimValues })
  .map(
    ({ claim, value }): Mutation => ({
      kind: `claim ${claim} edited`,
      apply(token) {
        const [header, payload, signature] = token.split('.');
        const claims = decodeJson(payload) ?? {};
        const edited = { ...claims, [claim]: value };
        if (value === undefined) delete edited[claim];
        return `${header}.${b64urlJson(edited)}.${signature}`;
      },
    }),
  );

/** Changing the header's algorithm (or kid), keeping or dropping the signature, or signing with another algorithm. */
const algChange = fc
  .record({
    alg: fc.constantFrom('none', 'None', 'NONE', 'HS256', 'HS384', 'HS512', 'RS256', 'RS512', 'ES256', 'PS256', 'hs256', 'HS256 ', '', null, 42),
    signature: fc.constantFrom('keep', 'drop', 'hmac-public-key', 'hmac-guess'),
    kid: fc.option(fc.constantFrom('../../etc/passwd', 'kid-1', '', 'x'.repeat(200), '%2e%2e', 'https://evil.example.com/key', 7), { nil: undefined }),
  })
  .map(
    ({ alg, signature, kid }): Mutation => ({
      kind: `alg ${String(alg)} / signature ${signature}`,
      apply(token, others) {
        const [header, payload, original] = token.split('.');
        const edited: Record<string, unknown> = { ...(decodeJson(header) ?? {}), alg };
        if (kid !== undefined) edited.kid = kid;
        const head = b64urlJson(edited);
        const input = `${head}.${payload}`;
        if (signature === 'keep') return `${input}.${original}`;
        if (signature === 'drop') return `${input}.`;
        // Key-confusion attempts: an HMAC keyed with something public (the install
        // public key text is passed as the last "other"), or with a guessable secret.
        const key = signature === 'hmac-public-key' ? (others[others.length - 1] ?? '') : 'secret';
        const hash = alg === 'HS384' ? 'sha384' : alg === 'HS512' ? 'sha512' : 'sha256';
        return `${input}.${createHmac(hash, key).update(input).digest('base64url')}`;
      },
    }),
  );

/** Any single mutation of a JWT. */
export const jwtMutation: fc.Arbitrary<Mutation> = fc.oneof(bitFlip, charSwap, truncation, extension, segmentSwap, claimEdit, algChange);

/** One to three mutations applied in a row. */
export const jwtMutations: fc.Arbitrary<Mutation[]> = fc.array(jwtMutation, { minLength: 1, maxLength: 3 });

export function applyAll(token: string, mutations: readonly Mutation[], others: readonly string[]): string {
  return mutations.reduce((current, mutation) => (current.length === 0 ? current : mutation.apply(current, others)), token);
}

/** Mutations that make sense for an opaque ticket (`rt1.<tenant>.<random>`). */
export const ticketMutations: fc.Arbitrary<Mutation[]> = fc.array(fc.oneof(bitFlip, charSwap, truncation, extension, segmentSwap), {
  minLength: 1,
  maxLength: 3,
});

/**
 * Whether `mutated` is the same signed token written differently: identical
 * header and payload segments and the same signature bytes (a base64url
 * string's last character has spare bits that decoders ignore). Such a token
 * carries exactly what was signed, so accepting it is no forgery; for HS256,
 * atlassian-jwt compares the signature text itself, so not even that passes.
 */
export function sameSignedToken(original: string, mutated: string): boolean {
  const a = original.split('.');
  const b = mutated.split('.');
  if (b.length !== 3 || a[0] !== b[0] || a[1] !== b[1] || !/^[A-Za-z0-9_-]+$/.test(b[2])) return false;
  return Buffer.from(a[2], 'base64url').equals(Buffer.from(b[2], 'base64url'));
}
