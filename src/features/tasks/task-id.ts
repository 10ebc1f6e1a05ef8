import { hash, timingSafeEqual } from 'node:crypto'
import { LRUCache } from 'lru-cache'

/**
 * Tenant-scoped task ids: `<upstream id>.<tag>`, where tag is a truncated
 * HMAC-SHA256 of (tenant id, upstream id) under the gateway secret. A tenant can
 * only present ids minted for it; another tenant's id, a forged one or an edited
 * one fails verification. No storage: it survives restarts and holds across
 * replicas that share GATEWAY_SECRET. The upstream id stays readable on purpose
 * (support tickets with Evolink quote it); it is useless without the upstream key.
 */
const tagBytes = 16 // 128-bit tag
const separator = '.'
const tagLength = Math.ceil(tagBytes * 4 / 3) // base64url, no padding
const sha256BlockBytes = 64

export interface TaskIdCodec {
  scope (tenantId: string, upstreamId: string): string
  /** the upstream id, or null when the id was not minted for this tenant */
  unscope (tenantId: string, scopedId: string): string | null
}

export interface TaskIdCodecOptions {
  /** the first one signs; every one verifies (rotation) */
  secrets: readonly string[]
  /** how many verified (tenant, id) pairs are remembered; 0: none (default 10,000) */
  verifiedCacheSize?: number
}

/** HMAC-SHA256 of a UTF-8 message, as hex */
type Hmac = (message: string) => string

/**
 * HMAC-SHA256 (RFC 2104) from two one-shot `crypto.hash` calls over pads derived
 * once per secret. Why not `createHmac`: it builds a native object and sets up the
 * key on every call, the largest single cost of a create or a poll under load
 * (profiled: ~30 µs per request; this: ~3 µs). Hex in and out of `crypto.hash`
 * because its 'buffer' output is several times slower. test/features/tasks/task-id.test.ts
 * checks it against `createHmac` on arbitrary keys and messages.
 */
export function sha256Hmac (secret: string | Buffer): Hmac {
  let key = Buffer.from(secret)
  if (key.length > sha256BlockBytes) key = hash('sha256', key, 'buffer')
  const innerPad = Buffer.alloc(sha256BlockBytes, 0x36)
  // The outer hash's input: the outer pad, then the inner digest (written per call; calls are synchronous).
  const outer = Buffer.alloc(sha256BlockBytes + 32, 0x5c)
  for (let i = 0; i < key.length; i++) {
    innerPad[i] = (innerPad[i] as number) ^ (key[i] as number)
    outer[i] = (outer[i] as number) ^ (key[i] as number)
  }
  return (message) => {
    const text = Buffer.from(message)
    const inner = Buffer.allocUnsafe(sha256BlockBytes + text.length)
    innerPad.copy(inner)
    text.copy(inner, sha256BlockBytes)
    outer.write(hash('sha256', inner, 'hex'), sha256BlockBytes, 'hex')
    return hash('sha256', outer, 'hex')
  }
}

export function createTaskIdCodec (options: TaskIdCodecOptions): TaskIdCodec {
  if (options.secrets.length === 0) throw new Error('createTaskIdCodec needs at least one secret')
  const macs = options.secrets.map((secret) => sha256Hmac(secret))
  const sign = macs[0] as Hmac
  // Clients poll the same ids over and over: a pair verified once is not hashed again.
  // Only successes are kept, under the exact (tenant, presented id) pair.
  const cacheSize = options.verifiedCacheSize ?? 10_000
  const verified = cacheSize > 0 ? new LRUCache<string, string>({ max: cacheSize }) : null

  // The NUL separator keeps ("ab","c") and ("a","bc") apart.
  const tag = (mac: Hmac, tenantId: string, upstreamId: string): Buffer => Buffer.from(mac(tenantId + '\0' + upstreamId).slice(0, 2 * tagBytes), 'hex')

  return {
    scope (tenantId, upstreamId) {
      return upstreamId + separator + tag(sign, tenantId, upstreamId).toString('base64url')
    },
    unscope (tenantId, scopedId) {
      const cacheKey = tenantId + '\0' + scopedId
      const known = verified?.get(cacheKey)
      if (known !== undefined) return known
      const cut = scopedId.length - tagLength - 1
      if (cut < 1 || scopedId[cut] !== separator) return null
      const presentedText = scopedId.slice(cut + 1)
      const presented = Buffer.from(presentedText, 'base64url')
      // Re-encoding rejects non-canonical spellings of the same bytes.
      if (presented.length !== tagBytes || presented.toString('base64url') !== presentedText) return null
      const upstreamId = scopedId.slice(0, cut)
      for (const mac of macs) {
        if (timingSafeEqual(presented, tag(mac, tenantId, upstreamId))) {
          verified?.set(cacheKey, upstreamId)
          return upstreamId
        }
      }
      return null
    }
  }
}
