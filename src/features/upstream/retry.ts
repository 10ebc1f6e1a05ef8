import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger } from 'fastify'
import { isGatewayError } from '../../errors/table.ts'
import type { UpstreamErrorDetail } from './failure.ts'
import { parseRetryAfter } from '../../http/retry-after.ts'

/**
 * When an upstream call may be tried again, and after how long.
 *
 * - A create (POST) is never retried once the request may have reached the
 *   upstream: a reset, a 5xx or a timeout can all mean the task was created,
 *   and a second one would cost the tenant twice. Only a refused connection
 *   (ECONNREFUSED: nothing was sent) is retried, once.
 * - A task read (GET) has no side effect: it is retried on a transport failure
 *   (reset, refused, closed) and on 502/503/504, up to `attempts` in all.
 * - Waits are capped exponential backoff with full jitter (a random delay in
 *   [0, min(maxDelayMs, baseDelayMs * 2^(n-1)))), so that replicas retrying at
 *   once spread out; an upstream `Retry-After` is honoured when it fits in
 *   maxDelayMs, and a longer one ends the retries (the upstream asked for more
 *   patience than a caller's request has).
 * - Everything, waits included, stays within `budgetMs` (UPSTREAM_TIMEOUT_MS):
 *   each attempt gets only what is left of it.
 *
 * Timeouts are never retried: the budget is spent. 4xx answers are final.
 */
export interface RetryPolicy {
  /** most attempts of a GET, the first included (1: no retries) */
  attempts: number
  baseDelayMs: number
  maxDelayMs: number
}

export interface RetryCall {
  method: 'GET' | 'POST'
  policy: RetryPolicy
  /** the whole call's time, waits included (UPSTREAM_TIMEOUT_MS) */
  budgetMs: number
  log?: FastifyBaseLogger
  /** tests: [0, 1) */
  random?: () => number
}

const retriedStatuses = new Set([502, 503, 504])
/** an attempt with less time than this left is not worth starting */
const minimumAttemptMs = 100

/** Full jitter: a uniformly random wait below the capped exponential step. */
export function backoffDelayMs (attempt: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, random: () => number = Math.random): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1))
  return Math.floor(random() * step)
}

function causeCode (error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown } }).cause
  return typeof cause?.code === 'string' ? cause.code : undefined
}

/** Why this failure may be retried (for the log), or null when it may not. */
export function retryReason (method: RetryCall['method'], error: unknown, attempt: number, policy: RetryPolicy): string | null {
  if (!isGatewayError(error)) return null
  if (method === 'POST') {
    return attempt === 1 && error.tableCode === 'upstream_unavailable' && causeCode(error) === 'ECONNREFUSED' ? 'ECONNREFUSED' : null
  }
  if (attempt >= policy.attempts) return null
  if (error.tableCode === 'upstream_unavailable') return causeCode(error) ?? 'transport'
  const status = (error as { upstreamDetail?: UpstreamErrorDetail }).upstreamDetail?.upstreamStatus
  if (error.tableCode === 'upstream_error' && status !== undefined && retriedStatuses.has(status)) return `status ${status}`
  return null
}

/**
 * Runs `attempt` (given the time it may take) until it succeeds or a failure
 * may not be retried; rethrows the last failure.
 */
export async function callWithRetries<T> (call: RetryCall, attempt: (budgetMs: number) => Promise<T>): Promise<T> {
  const { method, policy, budgetMs, log } = call
  const started = performance.now()
  for (let number = 1; ; number++) {
    try {
      // The first attempt gets the whole budget; later ones what is left of it.
      return await attempt(number === 1 ? budgetMs : Math.floor(budgetMs - (performance.now() - started)))
    } catch (error) {
      const reason = retryReason(method, error, number, policy)
      if (reason === null) throw error
      let delayMs = backoffDelayMs(number, policy, call.random)
      const asked = parseRetryAfter((error as { upstreamDetail?: UpstreamErrorDetail }).upstreamDetail?.retryAfter)
      if (asked !== undefined) {
        if (asked > policy.maxDelayMs) throw error
        delayMs = Math.max(delayMs, asked)
      }
      if (budgetMs - (performance.now() - started) - delayMs < Math.min(minimumAttemptMs, budgetMs / 4)) throw error
      log?.info({ attempt: number, delayMs, reason }, 'retrying the upstream call')
      await sleep(delayMs)
    }
  }
}
