/**
 * The one reader of `Retry-After` (RFC 9110 §10.2.3), for upstream answers and
 * webhook receivers alike: delta-seconds or an HTTP date, in ms from `nowMs`;
 * undefined when absent or unreadable.
 */
export function parseRetryAfter (value: string | string[] | undefined, nowMs: number = Date.now()): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim()
  if (text === undefined || text === '' || text.length > 64) return undefined
  if (/^\d{1,9}$/.test(text)) return Number(text) * 1000
  // HTTP dates only (`Sun, 06 Nov 1994 08:49:37 GMT`): Date.parse would read "-5" as a year.
  if (!/^[A-Za-z]{3},/.test(text)) return undefined
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs)
}
