import { hash } from 'node:crypto'

/**
 * JSON with object keys sorted at every level, so that two bodies that mean the
 * same (`{"a":1,"b":2}` and `{"b":2,"a":1}`) are one text. Arrays keep their
 * order (it is meaningful: image_urls). Only JSON values are expected: the body
 * has been parsed from JSON and validated.
 */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const entries = Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
    return `{${entries.join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/** sha256 (hex) of the canonical JSON: what "the same request" means for an Idempotency-Key. */
export function requestFingerprint (body: unknown): string {
  return hash('sha256', canonicalJson(body), 'hex')
}
