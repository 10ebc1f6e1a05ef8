/**
 * When a webhook is attempted again: the Standard Webhooks schedule (at once,
 * then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, …), bounded by a number of
 * attempts; a receiver's Retry-After replaces the next step (within bounds);
 * 410 Gone stops for good.
 */
export const retryDelaysMs: readonly number[] = [0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000]

/** A Retry-After longer than the longest step is not honoured beyond it. */
export const maxRetryAfterMs = 36_000_000

export interface AttemptOutcome {
  /** the receiver's status, or null when none came (refused, timeout, SSRF rule) */
  statusCode: number | null
  /** the receiver's Retry-After, in ms, when it sent one */
  retryAfterMs?: number
  /** why the attempt failed without a status, for the deliveries API */
  error?: string
}

export type NextStep = { kind: 'succeeded' } | { kind: 'failed', reason: string } | { kind: 'retry', atMs: number }

/** Delay before attempt number `attempt` (1-based; attempt 1 goes at once). */
export function delayBeforeAttempt (attempt: number): number {
  return retryDelaysMs[Math.min(attempt - 1, retryDelaysMs.length - 1)]!
}

/** What follows attempt number `attempt` (1-based) with this outcome, at `nowMs`. */
export function nextStep (options: { attempt: number, outcome: AttemptOutcome, nowMs: number, maxAttempts: number }): NextStep {
  const { attempt, outcome, nowMs } = options
  const status = outcome.statusCode
  if (status !== null && status >= 200 && status < 300) return { kind: 'succeeded' }
  if (status === 410) return { kind: 'failed', reason: 'the receiver answered 410 Gone' }
  if (attempt >= options.maxAttempts) return { kind: 'failed', reason: `no success after ${attempt} attempts` }
  const scheduled = delayBeforeAttempt(attempt + 1)
  const delay = outcome.retryAfterMs === undefined ? scheduled : Math.min(Math.max(outcome.retryAfterMs, 0), maxRetryAfterMs)
  return { kind: 'retry', atMs: nowMs + delay }
}
