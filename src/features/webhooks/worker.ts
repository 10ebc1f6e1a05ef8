import type { FastifyBaseLogger } from 'fastify'
import { nextStep, type AttemptOutcome } from './schedule.ts'
import { maxHistory, type Delivery, type WebhookStore } from './store.ts'

export interface WebhookWorkerOptions {
  store: WebhookStore
  /** clock of the schedule (injectable: tests move it instead of waiting minutes) */
  now: () => number
  /** one attempt; `signal` aborts when the worker stops */
  attempt (delivery: Delivery, signal: AbortSignal): Promise<AttemptOutcome>
  maxAttempts: number
  /** longer than one attempt can take: an attempt whose instance died is made again after it */
  leaseMs: number
  /** how long records are kept */
  ttlMs: number
  /** how often the queue is looked at (other instances, and retries that came due) */
  pollIntervalMs: number
  log: FastifyBaseLogger
  batchSize?: number
}

export interface WebhookWorker {
  start (): void
  /** something was queued: look now rather than at the next poll */
  wake (): void
  /** makes every attempt due now (by the injected clock) and resolves when they are done */
  runDue (): Promise<void>
  /** stops polling and aborts attempts in flight (their leases run out, so they are made again later) */
  stop (): Promise<void>
}

/** One loop per instance over the shared queue of due attempts. */
export function createWebhookWorker (options: WebhookWorkerOptions): WebhookWorker {
  const { store, log } = options
  const batchSize = options.batchSize ?? 16
  const stopping = new AbortController()
  let timer: NodeJS.Timeout | null = null
  let running: Promise<void> | null = null
  let again = false
  // A Redis outage is logged once by the store plugin; the queue adds one line per outage, not one per poll.
  let queueFailing = false

  async function attemptOne (id: string): Promise<void> {
    const delivery = await store.delivery(id)
    if (delivery === null) return
    if (delivery.status !== 'pending') {
      await store.save({ ...delivery, nextAttemptAt: null }, options.ttlMs)
      return
    }
    const startedAt = options.now()
    const startedReal = performance.now()
    let outcome: AttemptOutcome
    try {
      outcome = await options.attempt(delivery, stopping.signal)
    } catch (error) {
      log.error({ err: error, webhook_id: id }, 'webhook attempt failed unexpectedly')
      outcome = { statusCode: null, error: 'internal error' }
    }
    // Shutting down: leave the lease to run out, so that this attempt is made again.
    if (stopping.signal.aborted) return
    const attempt = delivery.attempts.length === 0 ? 1 : delivery.attempts.at(-1)!.attempt + 1
    const attemptsInRound = delivery.attemptsInRound + 1
    const step = nextStep({ attempt: attemptsInRound, outcome, nowMs: options.now(), maxAttempts: options.maxAttempts })
    const updated: Delivery = {
      ...delivery,
      attemptsInRound,
      attempts: [...delivery.attempts, {
        attempt,
        at: startedAt,
        statusCode: outcome.statusCode,
        error: outcome.error ?? null,
        durationMs: Math.round(performance.now() - startedReal)
      }].slice(-maxHistory),
      status: step.kind === 'retry' ? 'pending' : step.kind,
      nextAttemptAt: step.kind === 'retry' ? step.atMs : null,
      failureReason: step.kind === 'failed' ? step.reason : null,
      updatedAt: options.now()
    }
    await store.save(updated, options.ttlMs)
    const fields = { webhook_id: id, tenant: delivery.tenantId, attempt, status_code: outcome.statusCode, error: outcome.error }
    if (step.kind === 'failed') log.warn({ ...fields, reason: step.reason }, 'webhook delivery failed for good')
    else if (step.kind === 'retry') log.info({ ...fields, next_attempt_at: new Date(step.atMs).toISOString() }, 'webhook attempt failed, will retry')
    else log.info(fields, 'webhook delivered')
  }

  async function drain (): Promise<void> {
    for (;;) {
      if (stopping.signal.aborted) return
      const ids = await store.claimDue(options.now(), options.leaseMs, batchSize)
      if (ids.length === 0) return
      await Promise.all(ids.map(async (id) => {
        try {
          await attemptOne(id)
        } catch (error) {
          // The store failed (Redis down): the lease runs out and the attempt comes back.
          log.error({ err: error, webhook_id: id }, 'webhook attempt could not be recorded')
        }
      }))
    }
  }

  function schedule (): void {
    if (stopping.signal.aborted) return
    if (timer !== null) clearTimeout(timer)
    timer = setTimeout(() => { timer = null; runDue().catch(() => {}) }, options.pollIntervalMs)
    timer.unref()
  }

  function runDue (): Promise<void> {
    if (running !== null) {
      again = true
      return running
    }
    running = (async () => {
      do {
        again = false
        try {
          await drain()
          queueFailing = false
        } catch (error) {
          if (!queueFailing) log.error({ err: error }, 'webhook queue could not be read; retrying every poll until it can')
          queueFailing = true
        }
      } while (again && !stopping.signal.aborted)
    })().finally(() => {
      running = null
      schedule()
    })
    return running
  }

  return {
    start: schedule,
    wake () { runDue().catch(() => {}) },
    runDue,
    async stop () {
      stopping.abort()
      if (timer !== null) clearTimeout(timer)
      timer = null
      await running
    }
  }
}
