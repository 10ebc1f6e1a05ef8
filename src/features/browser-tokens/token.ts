import { createHash, hkdfSync, randomUUID } from 'node:crypto'
import { SignJWT, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose'

/** What a browser token may do; a tenant backend narrows it when it mints one. */
export type TokenOperation = 'create' | 'read'

/** The grant a browser token carries (its verified claims, in the gateway's words). */
export interface BrowserTokenGrant {
  tenantId: string
  /** the token's own id (`jti`): per-token create caps count under it */
  tokenId: string
  operations: readonly TokenOperation[]
  /** most creates this token may make; null: only the tenant's limits */
  maxCreates: number | null
  models: readonly string[] | null
  qualities: readonly string[] | null
  maxDuration: number | null
  /** the tenant's own user id, carried into logs (and per-end-user limits) */
  endUser: string | null
  /** the browser origin the token is bound to; null: any of the tenant's allowed origins */
  origin: string | null
  /** unix seconds */
  expiresAt: number
}

export type TokenClaims = Omit<BrowserTokenGrant, 'tenantId' | 'tokenId' | 'expiresAt'>

/** Why a presented token was refused: an honest, clear answer for the browser. */
export class TokenRejection extends Error {
  override name = 'TokenRejection'
  readonly reason: 'expired' | 'invalid'
  constructor (reason: 'expired' | 'invalid', message: string, options?: ErrorOptions) {
    super(message, options)
    this.reason = reason
  }
}

export interface BrowserTokenSigner {
  mint (options: { tenantId: string, ttlSeconds: number, claims: TokenClaims }): Promise<{ token: string, grant: BrowserTokenGrant }>
  /** the grant of a valid token; a TokenRejection otherwise */
  verify (token: string): Promise<BrowserTokenGrant>
}

const issuer = 'video-gateway'
const audience = 'video-gateway:browser'
const tokenType = 'vg-browser+jwt'
// Clocks of replicas drift a little; a token is not refused for a second or two of that.
const clockToleranceSeconds = 5

/** A JWT's shape: three base64url parts. Tenant keys never look like this. */
const jwtShape = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
export function looksLikeToken (value: string): boolean {
  return value.startsWith('eyJ') && jwtShape.test(value)
}

interface SigningKey {
  keyId: string
  key: Uint8Array
}

/**
 * One HMAC key per gateway secret, derived with HKDF so that the bytes that
 * sign task ids never sign tokens too. The key id is a hash of the derived key:
 * it names the key without revealing anything about it.
 */
function signingKey (secret: string): SigningKey {
  const key = new Uint8Array(hkdfSync('sha256', secret, 'video-gateway', 'browser-token/v1', 32))
  const keyId = createHash('sha256').update(key).digest('base64url').slice(0, 16)
  return { keyId, key }
}

interface GrantPayload extends JWTPayload {
  ops?: unknown
  max_creates?: unknown
  models?: unknown
  qualities?: unknown
  max_duration?: unknown
  end_user?: unknown
  origin?: unknown
}

const stringList = (value: unknown): string[] | null =>
  Array.isArray(value) && value.every((item) => typeof item === 'string') ? value : null
const integerOrNull = (value: unknown): number | null => Number.isSafeInteger(value) ? value as number : null
const stringOrNull = (value: unknown): string | null => typeof value === 'string' ? value : null

/**
 * Short-lived browser tokens: HS256 JWTs (jose) signed with a key derived from
 * GATEWAY_SECRET. Rotation: every listed secret verifies (the token's `kid`
 * picks its key), the first one signs, so tokens issued before a rotation
 * stay valid until they expire.
 */
export function createBrowserTokenSigner (options: { secrets: readonly string[], now?: () => number }): BrowserTokenSigner {
  const keys = options.secrets.map(signingKey)
  const current = keys[0]
  if (current === undefined) throw new Error('browser tokens need at least one secret')
  const byKeyId = new Map(keys.map((entry) => [entry.keyId, entry.key]))
  const nowSeconds = (): number => Math.floor((options.now?.() ?? Date.now()) / 1000)

  return {
    async mint ({ tenantId, ttlSeconds, claims }) {
      const issuedAt = nowSeconds()
      const tokenId = randomUUID()
      const payload: GrantPayload = { ops: [...claims.operations] }
      if (claims.maxCreates !== null) payload.max_creates = claims.maxCreates
      if (claims.models !== null) payload.models = [...claims.models]
      if (claims.qualities !== null) payload.qualities = [...claims.qualities]
      if (claims.maxDuration !== null) payload.max_duration = claims.maxDuration
      if (claims.endUser !== null) payload.end_user = claims.endUser
      if (claims.origin !== null) payload.origin = claims.origin
      const token = await new SignJWT(payload)
        .setProtectedHeader({ alg: 'HS256', kid: current.keyId, typ: tokenType })
        .setIssuer(issuer)
        .setAudience(audience)
        .setSubject(tenantId)
        .setJti(tokenId)
        .setIssuedAt(issuedAt)
        .setExpirationTime(issuedAt + ttlSeconds)
        .sign(current.key)
      return { token, grant: { ...claims, tenantId, tokenId, expiresAt: issuedAt + ttlSeconds } }
    },

    async verify (token) {
      let payload: GrantPayload
      try {
        ({ payload } = await jwtVerify<GrantPayload>(token, (header) => {
          const key = header.kid === undefined ? undefined : byKeyId.get(header.kid)
          // A key id no listed secret produced: the token was signed elsewhere, or with a retired secret.
          if (key === undefined) throw new TokenRejection('invalid', 'The token was not issued by this gateway (unknown key id).')
          return key
        }, {
          algorithms: ['HS256'],
          issuer,
          audience,
          typ: tokenType,
          clockTolerance: clockToleranceSeconds,
          currentDate: new Date(nowSeconds() * 1000),
          requiredClaims: ['sub', 'jti', 'exp', 'iat']
        }))
      } catch (error) {
        if (error instanceof TokenRejection) throw error
        if (error instanceof joseErrors.JWTExpired) {
          const expiredAt = integerOrNull(error.payload.exp)
          const when = expiredAt === null ? '' : ` at ${new Date(expiredAt * 1000).toISOString()}`
          throw new TokenRejection('expired', `The token expired${when}; get a new one.`, { cause: error })
        }
        throw new TokenRejection('invalid', 'The token is invalid (malformed, tampered with, or not for this gateway).', { cause: error })
      }
      const operations = stringList(payload.ops)
      if (operations === null || !operations.every((op) => op === 'create' || op === 'read')) {
        throw new TokenRejection('invalid', 'The token is invalid (unknown operations).')
      }
      return {
        tenantId: payload.sub as string,
        tokenId: payload.jti as string,
        operations: operations as TokenOperation[],
        maxCreates: integerOrNull(payload.max_creates),
        models: stringList(payload.models),
        qualities: stringList(payload.qualities),
        maxDuration: integerOrNull(payload.max_duration),
        endUser: stringOrNull(payload.end_user),
        origin: stringOrNull(payload.origin),
        expiresAt: payload.exp as number
      }
    }
  }
}
