import { createHmac, timingSafeEqual } from 'node:crypto'

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

export interface TaskIdCodec {
  scope (tenantId: string, upstreamId: string): string
  /** the upstream id, or null when the id was not minted for this tenant */
  unscope (tenantId: string, scopedId: string): string | null
}

export function createTaskIdCodec (options: { secrets: readonly string[] }): TaskIdCodec {
  if (options.secrets.length === 0) throw new Error('createTaskIdCodec needs at least one secret')
  const [signingSecret] = options.secrets as [string, ...string[]]

  function tag (secret: string, tenantId: string, upstreamId: string): Buffer {
    // The NUL separator keeps ("ab","c") and ("a","bc") apart.
    return createHmac('sha256', secret).update(tenantId).update('\0').update(upstreamId).digest().subarray(0, tagBytes)
  }

  return {
    scope (tenantId, upstreamId) {
      return upstreamId + separator + tag(signingSecret, tenantId, upstreamId).toString('base64url')
    },
    unscope (tenantId, scopedId) {
      const cut = scopedId.length - tagLength - 1
      if (cut < 1 || scopedId[cut] !== separator) return null
      const presentedText = scopedId.slice(cut + 1)
      const presented = Buffer.from(presentedText, 'base64url')
      // Re-encoding rejects non-canonical spellings of the same bytes.
      if (presented.length !== tagBytes || presented.toString('base64url') !== presentedText) return null
      const upstreamId = scopedId.slice(0, cut)
      for (const secret of options.secrets) {
        if (timingSafeEqual(presented, tag(secret, tenantId, upstreamId))) return upstreamId
      }
      return null
    }
  }
}
