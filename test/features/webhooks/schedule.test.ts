import t from 'tap'
import { delayBeforeAttempt, maxRetryAfterMs, nextStep } from '../../../src/features/webhooks/schedule.ts'

const nowMs = 1_000_000

t.test('the Standard Webhooks schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then 10 h', async (t) => {
  t.same([1, 2, 3, 4, 5, 6, 7, 8, 9].map(delayBeforeAttempt), [0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000, 36_000_000])
})

t.test('what follows an attempt', async (t) => {
  const step = (attempt: number, statusCode: number | null, retryAfterMs?: number) =>
    nextStep({ attempt, nowMs, maxAttempts: 8, outcome: { statusCode, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) } })
  t.same(step(1, 200), { kind: 'succeeded' })
  t.same(step(1, 204), { kind: 'succeeded' })
  t.same(step(1, 500), { kind: 'retry', atMs: nowMs + 5_000 })
  t.same(step(2, null), { kind: 'retry', atMs: nowMs + 300_000 }, 'no answer at all is a failure too')
  t.same(step(3, 301), { kind: 'retry', atMs: nowMs + 1_800_000 }, 'a redirect is a failure')
  t.same(step(1, 429, 120_000), { kind: 'retry', atMs: nowMs + 120_000 }, 'Retry-After replaces the step')
  t.same(step(1, 503, 0), { kind: 'retry', atMs: nowMs }, 'even a shorter one')
  t.same(step(1, 503, 10 * maxRetryAfterMs), { kind: 'retry', atMs: nowMs + maxRetryAfterMs }, 'bounded')
  t.same(step(1, 410), { kind: 'failed', reason: 'the receiver answered 410 Gone' })
  t.same(step(8, 500), { kind: 'failed', reason: 'no success after 8 attempts' })
  t.same(step(8, 200), { kind: 'succeeded' }, 'the last attempt may still succeed')
})
