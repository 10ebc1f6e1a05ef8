import { timingSafeEqual } from 'node:crypto'
import { sha256Hmac } from '../tasks/task-id.ts'

/** What a signed content link grants: one result of one task of one tenant, until `expires` (unix s). */
export interface ContentLink {
  tenantId: string
  /** the tenant-scoped task id, as in the URL path */
  taskId: string
  index: number
  expires: number
}

export interface ContentLinkSigner {
  /** the query string (without `?`) that authorises this link */
  sign (link: ContentLink): string
  /** whether `signature` was made for this link by one of the secrets (expiry is the caller's check) */
  verify (link: ContentLink, signature: string): boolean
}

const signatureBytes = 16

/**
 * Signed, expiring content links for `<video src>`, which cannot send
 * Authorization: an HMAC over tenant, task, index and expiry under
 * GATEWAY_SECRET (every secret verifies: rotation), like task ids, so no
 * storage is involved. The `archive-link` label keeps these MACs apart from
 * task-id tags made with the same secret.
 */
export function createContentLinkSigner (options: { secrets: readonly string[] }): ContentLinkSigner {
  const macs = options.secrets.map((secret) => sha256Hmac(secret))
  const mac = (hmac: (message: string) => string, link: ContentLink): Buffer =>
    Buffer.from(hmac(['archive-link', link.tenantId, link.taskId, String(link.index), String(link.expires)].join('\0')).slice(0, 2 * signatureBytes), 'hex')
  return {
    sign (link) {
      const query = new URLSearchParams({ index: String(link.index), tenant: link.tenantId, expires: String(link.expires), signature: mac(macs[0]!, link).toString('base64url') })
      return query.toString()
    },
    verify (link, signature) {
      const presented = Buffer.from(signature, 'base64url')
      if (presented.length !== signatureBytes || presented.toString('base64url') !== signature) return false
      return macs.some((hmac) => timingSafeEqual(presented, mac(hmac, link)))
    }
  }
}
