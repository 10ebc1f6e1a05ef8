import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import { gatewayError, storeUnavailable, type GatewayError } from '../../errors/table.ts'
import { createChargeOf, fromMilli, toMilli } from './charge.ts'
import { createMemoryUsageStore, type BudgetName, type RateLimitCounted, type Reservation, type TaskOutcome, type UsageDay } from './store/memory.ts'
import { formatWait } from '../store/fallback-rate-limit-store.ts'
import { createRedisUsageStore } from './store/redis.ts'
import type { TaskIndexWrite } from '../tasks/index-store/redis.ts'
import { createUsageLedger, encodeCreate, encodeFinish, type LedgerCreate, type UsageLedger } from './ledger.ts'
import { parseUtcDay } from './windows.ts'
import { isTerminalStatus } from '../tasks/snapshot.ts'
import type { Tenant } from '../tenants/registry.ts'
import type { CreateGenerationBody } from '../../schemas/generation.ts'
import type { VideoGenerationTask } from '../../schemas/generated/evolink.ts'

export interface TenantUsageOptions {
  /** TASK_CONCURRENCY_STALE_MS: a task holds its tenant's concurrency slot at most this long */
  staleMs: number
  /** USAGE_FLUSH_MS: how long request counts gather before they are written to Redis */
  requestCountFlushMs?: number
  /** clock of budget windows and slot deadlines (default Date.now) */
  now?: () => number
  /** database mode's usage ledger (usage/ledger.ts); absent: LEDGER_FLUSH_MS 1000, LEDGER_CLAIM_IDLE_MS 30000 */
  ledger?: { flushMs: number, claimIdleMs: number }
}

export interface TaskFinished {
  /** the task's tenant (a callback's registration names it) */
  tenantId: string
  upstreamTaskId: string
  /** the task's status: completed, or failed (cancelled counts as failed); any other status is ignored */
  status: string
  /** the task's final `usage.credits_reserved`, when it reports one: corrects the charge of its create */
  finalCredits?: number
}

export interface TenantUsage {
  /**
   * Admits a create before the upstream is called: reserves a concurrency slot
   * and the estimated charge atomically, or throws 429 concurrency_limit_exceeded
   * or budget_exceeded (503 store_unavailable if the tenant has limits and Redis
   * fails). Null: the store failed for a tenant without limits, which is let
   * through uncounted. Follow with settle() or release(), always.
   */
  admit (create: { tenant: Tenant, body: CreateGenerationBody, request: FastifyRequest }): Promise<Reservation | null>
  /**
   * The upstream created the task: the slot is now its id, the charge its `usage.credits_reserved`
   * (metrics count it even if the store failed). With Redis the write goes behind the answer
   * (store/write-behind.ts): this resolves once it is sent, and a failure is logged when it happens.
   * `index` (Redis: taskIndex.writeFor) rides on the same script; answers whether it did (if not,
   * the caller adds it to the index itself). Never throws.
   */
  settle (created: { tenant: Tenant, body: CreateGenerationBody, reservation: Reservation | null, task: VideoGenerationTask, taskId: string, request: FastifyRequest, index?: TaskIndexWrite | null }): Promise<boolean>
  /** the create failed: slot and charge are given back. Never throws. */
  release (failed: { reservation: Reservation | null, request: FastifyRequest }): Promise<void>
  /**
   * The gateway saw the task finished (a read, a long-poll, an event stream, or
   * a callback): frees its slot and counts it, once per task however often it is
   * called. Never throws.
   */
  taskFinished (finished: TaskFinished): Promise<void>
  /** the archive stored a task's videos: counted in the day's usage. Never throws. */
  archived (stored: { tenantId: string, videos: number, bytes: number }): Promise<void>
  /** the clock of usage days and budget windows (ms) */
  now (): number
  /** per-day counters of one tenant (throws store_unavailable if Redis fails) */
  /** the tenant's days, or with `endUser` that end user's part (browser tokens' creates and requests) */
  report (options: { tenantId: string, days: readonly string[], endUser?: string | null }): Promise<UsageDay[]>
}

declare module 'fastify' {
  interface FastifyInstance {
    tenantUsage: TenantUsage
    /** database mode's usage ledger (null in file mode) */
    usageLedger: UsageLedger | null
    /** counts an authenticated request in its tenant's usage of the day */
    countTenantRequest (request: FastifyRequest): void
  }
}

const budgetWords: Record<BudgetName, { window: string, unit: string }> = {
  creditsPerDay: { window: 'daily', unit: 'credits' },
  creditsPerMonth: { window: 'monthly', unit: 'credits' },
  videoSecondsPerDay: { window: 'daily', unit: 'video-seconds' },
  videoSecondsPerMonth: { window: 'monthly', unit: 'video-seconds' }
}

/**
 * Keeps the count for the answer's rate-limit headers (tenants/rate-limit.ts sets them from
 * `admittedRateLimit`); answers the 429 of @fastify/rate-limit's own wording when it is past the limit.
 */
function countedRequest (request: FastifyRequest, max: number, counted: RateLimitCounted): GatewayError | null {
  const resetSeconds = Math.ceil(counted.ttlMs / 1000)
  request.admittedRateLimit = { limit: max, remaining: Math.max(0, max - counted.current), resetSeconds }
  if (counted.current <= max) return null
  return gatewayError('rate_limit_exceeded', { args: [formatWait(resetSeconds * 1000, true)], headers: { 'retry-after': String(resetSeconds) } })
}

function creditsOf (task: Readonly<VideoGenerationTask>): number | null {
  const credits = task.usage?.credits_reserved
  return typeof credits === 'number' && Number.isFinite(credits) && credits >= 0 ? toMilli(credits) : null
}

/**
 * Per-tenant concurrency caps, budgets and usage counters (lib/usage-store.ts),
 * in Redis when there is one. Every authenticated /v1 request is counted
 * (`countRequest`, hooked in routes/v1/index.ts).
 */
async function tenantUsagePlugin (fastify: FastifyInstance, options: TenantUsageOptions): Promise<void> {
  const now = options.now ?? Date.now
  const { admissionRateLimit } = fastify
  const ledger = fastify.database === null
    ? null
    : createUsageLedger({
      database: fastify.database,
      redis: fastify.redis,
      streamKey: fastify.redisKeys.ledger,
      flushMs: options.ledger?.flushMs ?? 1000,
      claimIdleMs: options.ledger?.claimIdleMs ?? 30_000,
      log: fastify.log.child({ component: 'usage-ledger' }),
      registry: fastify.metrics.registry
    })
  const store = fastify.redis === null
    ? createMemoryUsageStore()
    : createRedisUsageStore({
      redis: fastify.redis,
      keyPrefix: fastify.redisKeys.usage,
      requestCountFlushMs: options.requestCountFlushMs,
      ...(fastify.redisWriteBehind === null ? {} : { writeBehind: fastify.redisWriteBehind }),
      ...(ledger === null ? {} : { ledgerStream: fastify.redisKeys.ledger })
    })
  /** Whether the store's scripts add the ledger's entries themselves (Redis); otherwise they wait in the ledger's memory. */
  const streamed = ledger?.stream != null
  // Terminal reads repeat (clients poll a finished task, caches serve it): this spares the store the repeats.
  const recentlyFinished = new LRUCache<string, true>({ max: 10_000 })
  const log = fastify.log.child({ component: 'tenant-usage' })
  /** During a Redis outage the outage tracker has warned once already: each failure then is a debug line. */
  const storeFailed = (logger: FastifyBaseLogger, error: unknown, message: string, fields: Record<string, unknown> = {}): void => {
    if (fastify.redisOutage?.down === true) logger.debug({ err: error, ...fields }, message)
    else logger.warn({ err: error, ...fields }, message)
  }

  const usage: TenantUsage = {
    async admit ({ tenant, body, request }) {
      const charge = createChargeOf(body)
      const hasLimits = tenant.maxConcurrentTasks !== null || tenant.budget !== null
      const at = now()
      // Redis mode, the create path: the tenant's create limit is counted here, in the admission's
      // script, instead of by @fastify/rate-limit in preHandler (one round trip instead of two).
      const rateLimit = admissionRateLimit !== null && request.routeOptions.config.rateLimitInAdmission === true
        ? { key: `${admissionRateLimit.keyPrefix}{${tenant.id}}:${request.routeOptions.method}${request.routeOptions.url ?? ''}`, max: tenant.rateLimit.max, timeWindowMs: tenant.rateLimit.timeWindowMs }
        : null
      let admission
      try {
        admission = await store.admit({
          tenantId: tenant.id,
          token: `reservation:${randomUUID()}`,
          charge,
          limits: { maxConcurrentTasks: tenant.maxConcurrentTasks, budget: tenant.budget, staleMs: options.staleMs },
          now: at,
          rateLimit
        })
      } catch (error) {
        if (rateLimit !== null && admissionRateLimit !== null) {
          // RATE_LIMIT_ON_STORE_ERROR, as for every other limit (store/fallback-rate-limit-store.ts).
          fastify.redisOutage?.failed(error)
          if (admissionRateLimit.onStoreError === 'deny') throw storeUnavailable(error)
          const counted = admissionRateLimit.onStoreError === 'memory'
            ? admissionRateLimit.local.incr(rateLimit.key, rateLimit.timeWindowMs, rateLimit.max)
            : { current: 0, ttl: 0 }
          const limited = countedRequest(request, rateLimit.max, { current: counted.current, ttlMs: counted.ttl })
          if (limited !== null) throw limited
        }
        // Budgets are money: a tenant with limits is not let through uncounted.
        if (hasLimits) throw storeUnavailable(error)
        storeFailed(request.log, error, 'usage store failed: this create is not counted')
        return null
      }
      const limited = rateLimit !== null && admission.rateLimit !== undefined ? countedRequest(request, rateLimit.max, admission.rateLimit) : null
      if (admission.admitted) return admission.reservation
      // Past the rate limit: refused before anything else was looked at (the store answers 'rate' only then).
      if (admission.reason === 'rate') throw limited ?? storeUnavailable(new Error('the store refused a create for a rate limit it was not given'))
      if (admission.reason === 'concurrency') throw gatewayError('concurrency_limit_exceeded', { args: [admission.limit] })
      const { window, unit } = budgetWords[admission.budget]
      const retryAfter = Math.max(1, Math.ceil((admission.resetsAt - at) / 1000))
      const cost = unit === 'credits' ? `about ${fromMilli(charge.creditsMilli)} credits` : `${charge.videoSeconds} video-seconds`
      throw gatewayError('budget_exceeded', {
        args: [`This create (${cost}) would pass the tenant's ${window} budget of ${admission.limit} ${unit}; it resets at ${new Date(admission.resetsAt).toISOString()} (in ${retryAfter} s).`],
        headers: { 'retry-after': String(retryAfter) }
      })
    },
    async settle ({ tenant, body, reservation, task, taskId, request, index }) {
      const charge = reservation?.charge ?? createChargeOf(body)
      const charged = creditsOf(task) ?? charge.creditsMilli
      fastify.metrics.creditsCharged(tenant.id, charged)
      fastify.metrics.videoSecondsOrdered(tenant.id, charge.videoSeconds)
      const entry: LedgerCreate | null = ledger === null
        ? null
        : {
            kind: 'create',
            tenantId: tenant.id,
            upstreamTaskId: task.id,
            taskId,
            endUser: request.browserToken?.endUser ?? null,
            model: body.model,
            videoSeconds: charge.videoSeconds,
            creditsMilli: charged,
            createdAt: reservation?.at ?? now()
          }
      // A create the store could not count is still a task the tenant has: the ledger keeps it, from memory.
      if (reservation === null) {
        if (entry !== null) ledger?.append(entry)
        return false
      }
      let keptInMemory = false
      const failed = (error: unknown, final: boolean): void => {
        // The task exists upstream: failing the answer would only make the client create it again.
        if (final) request.log.error({ err: error, upstreamTaskId: task.id, taskId }, 'usage store failed to settle a create: its estimate stays charged, its slot is freed after TASK_CONCURRENCY_STALE_MS, and it is missing from the task index')
        else storeFailed(request.log, error, 'usage store failed to settle a create: retried', { upstreamTaskId: task.id })
        // Whether or not the script ran, the entry is kept in memory too: a create written twice is one row.
        if (entry !== null && !keptInMemory) {
          keptInMemory = true
          ledger?.append(entry)
        }
      }
      try {
        await store.settle({
          reservation,
          upstreamTaskId: task.id,
          creditsMilli: creditsOf(task),
          staleMs: options.staleMs,
          now: now(),
          endUser: request.browserToken?.endUser,
          ledgerEntry: entry !== null && streamed ? encodeCreate(entry) : null,
          index: index ?? null,
          onFailure: failed
        })
        if (entry !== null && !streamed) ledger?.append(entry)
      } catch (error) {
        failed(error, true)
        return false
      }
      return index != null
    },
    async release ({ reservation, request }) {
      if (reservation === null) return
      try {
        await store.release(reservation)
      } catch (error) {
        request.log.error({ err: error }, 'usage store failed to release a failed create: its estimate stays charged, and its slot is freed after TASK_CONCURRENCY_STALE_MS')
      }
    },
    async taskFinished ({ tenantId, upstreamTaskId, status, finalCredits }) {
      if (!isTerminalStatus(status)) return
      const seenKey = `${tenantId}\n${upstreamTaskId}`
      if (recentlyFinished.has(seenKey)) return
      const outcome: TaskOutcome = status === 'completed' ? 'completed' : 'failed'
      try {
        const finalCreditsMilli = finalCredits === undefined || !Number.isFinite(finalCredits) || finalCredits < 0 ? null : toMilli(finalCredits)
        const at = now()
        const ledgerEntry = ledger !== null && streamed ? encodeFinish({ tenantId, upstreamTaskId, outcome, finishedAt: at }) : null
        const { first, creditsDeltaMilli, settledCreditsMilli } = await store.finish({ tenantId, upstreamTaskId, outcome, finalCreditsMilli, now: at, ledgerEntry })
        recentlyFinished.set(seenKey, true)
        if (first) fastify.metrics.creditsCharged(tenantId, creditsDeltaMilli)
        // (With Redis the finish script has added the entry, once per task.)
        if (first && ledger !== null && !streamed) ledger.append({ kind: 'finish', tenantId, upstreamTaskId, outcome, settledCreditsMilli, finishedAt: at })
      } catch (error) {
        // The next read of the task tries again; the stale bound frees the slot meanwhile.
        storeFailed(log, error, 'usage store failed to record a finished task', { tenant: tenantId, upstreamTaskId })
      }
    },
    async archived ({ tenantId, videos, bytes }) {
      try {
        await store.countArchived({ tenantId, videos, bytes, now: now() })
      } catch (error) {
        storeFailed(log, error, 'usage store failed to count archived videos', { tenant: tenantId })
      }
    },
    now,
    async report (options) {
      let days
      try {
        days = await store.report(options)
      } catch (error) {
        throw storeUnavailable(error)
      }
      if (ledger === null || days.length === 0) return days
      // Database mode: tasks, video-seconds and credits are the ledger's (requests and archived
      // videos are counted only in the counters). What is waiting is written first, so the
      // report is exact for everything this gateway, and Redis, has seen.
      const first = parseUtcDay(days[0]?.date ?? '') ?? 0
      const last = parseUtcDay(days[days.length - 1]?.date ?? '') ?? 0
      let ledgerDays
      try {
        await ledger.flush()
        ledgerDays = await ledger.report({ tenantId: options.tenantId, fromMs: first, toMs: last, endUser: options.endUser ?? null })
      } catch (error) {
        throw storeUnavailable(error)
      }
      return days.map((day) => {
        const entry = ledgerDays.get(day.date)
        return { ...day, tasksCreated: 0, tasksCompleted: 0, tasksFailed: 0, videoSeconds: 0, creditsMilli: 0, ...entry }
      })
    }
  }
  fastify.decorate('tenantUsage', usage)
  fastify.decorate('usageLedger', ledger)
  // A finished task frees its tenant's concurrency slot and is counted (once, however often it is seen).
  fastify.taskStatus.onFinished(async ({ tenantId, upstreamTaskId, snapshot }) => {
    const finalCredits = creditsOf(snapshot.task)
    await usage.taskFinished({ tenantId, upstreamTaskId, status: snapshot.task.status, ...(finalCredits === null ? {} : { finalCredits: fromMilli(finalCredits) }) })
  })
  // Before redis-store's own onClose quits the connection (hooks of one level run in registration order).
  fastify.addHook('onClose', async () => {
    await store.close().catch((error: unknown) => { storeFailed(log, error, 'usage store failed to write its last request counts') })
    await ledger?.close().catch((error: unknown) => { log.error({ err: error }, 'usage ledger: the last write failed') })
  })
  fastify.decorate('countTenantRequest', function countTenantRequest (request: FastifyRequest): void {
    if (request.tenant === null) return
    // Not awaited: a request is not held up by its own count (in Redis mode it is
    // batched; this instance's report writes the batch before it reads).
    store.countRequest({ tenantId: request.tenant.id, now: now(), endUser: request.browserToken?.endUser }).catch((error: unknown) => {
      request.log.debug({ err: error }, 'usage store failed to count a request')
    })
  })
}

export default fp(tenantUsagePlugin, { name: 'tenant-usage', fastify: '5.x', dependencies: ['redis-store', 'rate-limit', 'database', 'metrics', 'task-status'] })
