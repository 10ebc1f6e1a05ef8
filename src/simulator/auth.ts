import { createHash, timingSafeEqual } from 'node:crypto'

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()

/** Whether an Authorization header carries `Bearer <apiKey>` (scheme case-insensitive). */
export function bearerMatches (header: string | undefined, apiKey: string): boolean {
  if (header === undefined) return false
  const match = /^bearer +(\S+) *$/i.exec(header)
  if (match === null) return false
  return timingSafeEqual(digest(match[1]!), digest(apiKey))
}
