import type { FastifyBaseLogger } from 'fastify'
import { createQueueWorker, type QueueWorker } from '../store/queue-worker.ts'
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
  /** aborted when the instance starts draining for shutdown: no new attempts are claimed (queue-worker.ts) */
  claimUntil?: AbortSignal
}

/** The queue worker of webhook attempts (features/store/queue-worker.ts). */
export type WebhookWorker = QueueWorker

/** One loop per instance over the shared queue of due attempts. */
export function createWebhookWorker (options: WebhookWorkerOptions): WebhookWorker {
  const { store, log } = options

  async function attemptOne (id: string, stopping: AbortSignal): Promise<void> {
    const delivery = await store.delivery(id)
    if (delivery === null) {
      // Expired with its TTL: nothing left to send.
      await store.unqueue(id)
      return
    }
    if (delivery.status !== 'pending') {
      await store.save({ ...delivery, nextAttemptAt: null }, options.ttlMs)
      return
    }
    const startedAt = options.now()
    const startedReal = performance.now()
    let outcome: AttemptOutcome
    try {
      outcome = await options.attempt(delivery, stopping)
    } catch (error) {
      log.error({ err: error, webhook_id: id }, 'webhook attempt failed unexpectedly')
      outcome = { statusCode: null, error: 'internal error' }
    }
    // Shutting down: nothing is recorded; the queue worker hands the lease back, so that another instance makes the attempt again at once.
    if (stopping.aborted) return
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

  return createQueueWorker({
    name: 'webhook',
    queue: store,
    now: options.now,
    leaseMs: options.leaseMs,
    handle: attemptOne,
    pollIntervalMs: options.pollIntervalMs,
    concurrency: options.batchSize ?? 16,
    log,
    claimUntil: options.claimUntil
  })
}
