import t from 'tap'
import { parseRetryAfter } from '../../src/http/retry-after.ts'

const nowMs = Date.UTC(2026, 0, 1)

t.test('delta-seconds', async (t) => {
  t.equal(parseRetryAfter('120', nowMs), 120_000)
  t.equal(parseRetryAfter(' 7 ', nowMs), 7_000)
  t.equal(parseRetryAfter('0', nowMs), 0)
  t.equal(parseRetryAfter(['30', '60'], nowMs), 30_000, 'a repeated header: the first')
})

t.test('an HTTP date, from now', async (t) => {
  t.equal(parseRetryAfter(new Date(nowMs + 60_000).toUTCString(), nowMs), 60_000)
  t.equal(parseRetryAfter(new Date(nowMs - 60_000).toUTCString(), nowMs), 0, 'a date in the past is now')
})

t.test('absent or unreadable: undefined', async (t) => {
  for (const value of [undefined, '', '   ', 'soon', '-5', '-1', '1.5', '2026-01-01', 'x'.repeat(65), '9'.repeat(10)]) {
    t.equal(parseRetryAfter(value, nowMs), undefined, JSON.stringify(value))
  }
})
