/**
 * The windows budgets and usage reports count in: the UTC day and the UTC
 * calendar month. Keys are their ISO names (`2026-11-23`, `2026-11`), so
 * that every instance, whatever its time zone, counts into the same ones.
 */
export const msPerDay = 86_400_000
// Asked several times per request (counters, budgets): the day's name is made once per day, not per call.
let lastDayNumber = Number.NaN
let lastDayName = ''

export function utcDay (nowMs: number): string {
  const dayNumber = Math.floor(nowMs / msPerDay)
  if (dayNumber !== lastDayNumber) {
    lastDayName = new Date(nowMs).toISOString().slice(0, 10)
    lastDayNumber = dayNumber
  }
  return lastDayName
}

export function utcMonth (nowMs: number): string {
  return utcDay(nowMs).slice(0, 7)
}

/** ms since the epoch of the next UTC midnight */
export function nextUtcDayStart (nowMs: number): number {
  const now = new Date(nowMs)
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)
}

/** ms since the epoch of the first instant of the next UTC month */
export function nextUtcMonthStart (nowMs: number): number {
  const now = new Date(nowMs)
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)
}

const dayPattern = /^(\d{4})-(\d{2})-(\d{2})$/

/** ms since the epoch of a `YYYY-MM-DD` day's start, or null if it is no calendar day (2026-02-30). */
export function parseUtcDay (day: string): number | null {
  const match = dayPattern.exec(day)
  if (match === null) return null
  const ms = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]))
  return utcDay(ms) === day ? ms : null
}

/** Every day from `fromMs` to `toMs` (both day starts), inclusive. */
export function daysBetween (fromMs: number, toMs: number): string[] {
  const days: string[] = []
  for (let ms = fromMs; ms <= toMs; ms += msPerDay) days.push(utcDay(ms))
  return days
}
