import { LRUCache } from 'lru-cache'
import type { TenantBudget } from '../../../schemas/tenants.ts'
import type { CreateCharge } from '../charge.ts'
import { msPerDay, nextUtcDayStart, nextUtcMonthStart, utcDay, utcMonth } from '../windows.ts'
import type { TaskIndexWrite } from '../../tasks/index-store/redis.ts'

/**
 * Per-tenant counters of what tasks cost and how many run, and the admission
 * of a create against them. A create is admitted in one atomic step that
 * checks the concurrency cap and every budget and, if all pass, reserves a
 * concurrency slot and the estimated charge; then the upstream is called, and
 * the reservation is settled to the upstream's figure (or released if the
 * create failed). Two implementations: Redis (redis-usage-store.ts: one Lua
 * script per step, shared by every instance) and memory (here: synchronous,
 * so one process's steps never interleave).
 */
export type BudgetName = keyof TenantBudget

/** Checked in this order; the first one that would be passed is the one named. */
export const budgetNames: readonly BudgetName[] = ['creditsPerDay', 'creditsPerMonth', 'videoSecondsPerDay', 'videoSecondsPerMonth']

export interface AdmissionLimits {
  maxConcurrentTasks: number | null
  budget: Readonly<TenantBudget> | null
  /** a slot is freed this long after the create even if the task is never seen finished */
  staleMs: number
}

export interface Reservation {
  tenantId: string
  /** stands for the task in the tenant's in-flight set until the upstream id is known */
  token: string
  day: string
  month: string
  charge: CreateCharge
  /** when it was admitted (ms): the usage ledger's `created_at` */
  at: number
  /**
   * Whether the task holds a slot in the tenant's in-flight set: only for a tenant with
   * `maxConcurrentTasks`. Without a cap nothing reads the set, so nothing is kept in it.
   */
  holdsSlot: boolean
}

/** A fixed-window request limit counted by admission itself (the Redis store: one script for both). */
export interface AdmissionRateLimit {
  /** the counter's key */
  key: string
  max: number
  timeWindowMs: number
}

/** What the window's counter says after this request: requests counted in it, ms left in it. */
export interface RateLimitCounted {
  current: number
  ttlMs: number
}

export type Admission = (
  | { admitted: true, reservation: Reservation }
  | { admitted: false, reason: 'rate', max: number }
  | { admitted: false, reason: 'concurrency', limit: number }
  | { admitted: false, reason: 'budget', budget: BudgetName, limit: number, resetsAt: number }
) & {
  /** with `rateLimit`: its count (a request over it is refused first, and takes nothing else) */
  rateLimit?: RateLimitCounted
}

export type TaskOutcome = 'completed' | 'failed'

export interface UsageDay {
  date: string
  requests: number
  tasksCreated: number
  tasksCompleted: number
  tasksFailed: number
  videoSeconds: number
  creditsMilli: number
  archivedVideos: number
  archivedBytes: number
}

export interface UsageStore {
  /**
   * With `rateLimit` (the Redis store only: in memory mode @fastify/rate-limit counts it), the
   * request is first counted in that window, in the same atomic step, and refused (`rate`) past it.
   */
  admit (options: { tenantId: string, token: string, charge: CreateCharge, limits: AdmissionLimits, now: number, rateLimit?: AdmissionRateLimit | null }): Promise<Admission>
  /**
   * The upstream created the task: its id takes the slot, its credits (null: it did not say)
   * replace the estimate; answers the credits charged. With `endUser` (a browser token's), the
   * create is also counted in that end user's ledger, and so is the task's end. With `ledgerEntry`
   * (the Redis store only), the usage ledger's entry for the create goes to its stream in the same step,
   * and so does, with `index` (the Redis store only), the create's task-index entry. The Redis store
   * given a write-behind resolves once the write is sent, before Redis answers: a failure is told to
   * `onFailure` (`final`: given up), and the write is retried meanwhile.
   */
  settle (options: {
    reservation: Reservation
    upstreamTaskId: string
    creditsMilli: number | null
    staleMs: number
    now: number
    endUser?: string | null
    ledgerEntry?: string | null
    index?: TaskIndexWrite | null
    onFailure?: (error: unknown, final: boolean) => void
  }): Promise<{ creditsMilli: number }>
  /** the create failed: slot and charge are given back */
  release (reservation: Reservation): Promise<void>
  /**
   * The gateway saw the task finished. Idempotent: only the first call for a
   * task counts it (`first`); the slot is freed and, when the task reports
   * its final credits, the charge of its create's day and month is corrected
   * by `creditsDeltaMilli`. `settledCreditsMilli`: what the task cost in the end (its final credits,
   * else its create's charge; null if unknown). With `ledgerEntry` (the Redis store only), the first
   * call also adds the usage ledger's entry for the task's end to its stream, with that figure.
   */
  finish (options: { tenantId: string, upstreamTaskId: string, outcome: TaskOutcome, finalCreditsMilli: number | null, now: number, ledgerEntry?: string | null }): Promise<{ first: boolean, creditsDeltaMilli: number, settledCreditsMilli: number | null }>
  countRequest (options: { tenantId: string, now: number, endUser?: string | null }): Promise<void>
  /** videos the archive stored for the tenant (counted on the day they were stored) */
  countArchived (options: { tenantId: string, videos: number, bytes: number, now: number }): Promise<void>
  /** the tenant's days, or (with `endUser`) that end user's part of them */
  report (options: { tenantId: string, days: readonly string[], endUser?: string | null }): Promise<UsageDay[]>
  /** writes what is still buffered (the app's close) */
  close (): Promise<void>
}

/** How long usage counters are kept: a report may look back this far. */
export const usageRetentionMs = 400 * msPerDay
/** How long the gateway remembers a task's charge, for its final correction (the upstream forgets tasks after about a week). */
export const taskChargeTtlMs = 8 * msPerDay

/** The usage of one budget's window, in the unit of its limit (milli-credits or seconds). */
export function budgetLimitInUnits (name: BudgetName, limit: number): number {
  return name.startsWith('credits') ? Math.round(limit * 1000) : limit
}

export function budgetResetsAt (name: BudgetName, now: number): number {
  return name.endsWith('PerDay') ? nextUtcDayStart(now) : nextUtcMonthStart(now)
}

interface DayCounters {
  requests: number
  created: number
  completed: number
  failed: number
  videoSeconds: number
  creditsMilli: number
  archivedVideos: number
  archivedBytes: number
}

interface TaskCharge {
  tenantId: string
  /** the browser token's end user who created it, if one did */
  endUser?: string
  day: string
  month: string
  creditsMilli: number
  finished: boolean
}

/**
 * The ledger an end user's counters are kept under, beside the tenant's own
 * (end user ids are `[A-Za-z0-9._:@-]`, so no tenant id or day can collide with it).
 */
export function endUserLedger (tenantId: string, endUser: string): string {
  return `${tenantId}/end-user/${endUser}`
}

interface MonthCounters {
  videoSeconds: number
  creditsMilli: number
}

const emptyDay = (): DayCounters => ({ requests: 0, created: 0, completed: 0, failed: 0, videoSeconds: 0, creditsMilli: 0, archivedVideos: 0, archivedBytes: 0 })
const emptyMonth = (): MonthCounters => ({ videoSeconds: 0, creditsMilli: 0 })

/** One instance's counters (no REDIS_URL): every step is synchronous, so admission is exact within the process. */
export function createMemoryUsageStore (options: { maxTasks?: number } = {}): UsageStore {
  const days = new Map<string, Map<string, DayCounters>>()
  const months = new Map<string, Map<string, MonthCounters>>()
  /** tenant → member (reservation token or upstream id) → stale deadline */
  const inFlight = new Map<string, Map<string, number>>()
  // lru-cache allocates its arrays for `max` entries up front: sized like the other memory-mode
  // caches (TASK_CACHE_MAX_ENTRIES), the oldest tasks beyond it lose only their final-usage correction.
  const maxTasks = options.maxTasks ?? 10_000
  const tasks = new LRUCache<string, TaskCharge>({ max: maxTasks, ttl: taskChargeTtlMs })

  // ledger → window → counters: nested maps, so that the hot path looks up strings it already
  // has (the tenant id, the memoized day) instead of hashing a new "ledger+day" key on every call.
  const windowOf = <T>(ledgers: Map<string, Map<string, T>>, ledger: string, window: string, create: (window: string) => T): T => {
    const known = ledgers.get(ledger)?.get(window)
    if (known !== undefined) return known
    const counters = create(window) // may prune: the ledger's map is looked up again after it
    let windows = ledgers.get(ledger)
    if (windows === undefined) {
      windows = new Map()
      ledgers.set(ledger, windows)
    }
    windows.set(window, counters)
    return counters
  }
  const newDay = (day: string): DayCounters => {
    pruneBefore(day)
    return emptyDay()
  }
  const dayOf = (ledger: string, day: string): DayCounters => windowOf(days, ledger, day, newDay)
  const monthOf = (tenantId: string, month: string): MonthCounters => windowOf(months, tenantId, month, emptyMonth)
  /** Counters past the retention go when a new day is first counted (a few per tenant per day). */
  function pruneBefore (today: string): void {
    const oldest = utcDay(Date.parse(today) - usageRetentionMs)
    const oldestMonth = oldest.slice(0, 7)
    const prune = <T>(ledgers: Map<string, Map<string, T>>, before: string): void => {
      for (const [ledger, windows] of ledgers) {
        for (const window of windows.keys()) if (window < before) windows.delete(window)
        if (windows.size === 0) ledgers.delete(ledger)
      }
    }
    prune(days, oldest)
    prune(months, oldestMonth)
  }
  const slotsOf = (tenantId: string, now: number): Map<string, number> => {
    let slots = inFlight.get(tenantId)
    if (slots === undefined) {
      slots = new Map()
      inFlight.set(tenantId, slots)
    }
    for (const [member, deadline] of slots) if (deadline <= now) slots.delete(member)
    return slots
  }

  return {
    async admit ({ tenantId, token, charge, limits, now }) {
      const holdsSlot = limits.maxConcurrentTasks !== null
      const slots = holdsSlot ? slotsOf(tenantId, now) : null
      if (slots !== null && limits.maxConcurrentTasks !== null && slots.size >= limits.maxConcurrentTasks) {
        return { admitted: false, reason: 'concurrency', limit: limits.maxConcurrentTasks }
      }
      const day = utcDay(now)
      const month = utcMonth(now)
      const today = dayOf(tenantId, day)
      const thisMonth = monthOf(tenantId, month)
      const used: Record<BudgetName, [number, number]> = {
        creditsPerDay: [today.creditsMilli, charge.creditsMilli],
        creditsPerMonth: [thisMonth.creditsMilli, charge.creditsMilli],
        videoSecondsPerDay: [today.videoSeconds, charge.videoSeconds],
        videoSecondsPerMonth: [thisMonth.videoSeconds, charge.videoSeconds]
      }
      for (const name of budgetNames) {
        const limit = limits.budget?.[name]
        if (limit === undefined) continue
        const [spent, cost] = used[name]
        if (spent + cost > budgetLimitInUnits(name, limit)) return { admitted: false, reason: 'budget', budget: name, limit, resetsAt: budgetResetsAt(name, now) }
      }
      slots?.set(token, now + limits.staleMs)
      today.creditsMilli += charge.creditsMilli
      today.videoSeconds += charge.videoSeconds
      thisMonth.creditsMilli += charge.creditsMilli
      thisMonth.videoSeconds += charge.videoSeconds
      return { admitted: true, reservation: { tenantId, token, day, month, charge, at: now, holdsSlot } }
    },
    async settle ({ reservation, upstreamTaskId, creditsMilli, staleMs, now, endUser }) {
      const { tenantId, day, month, charge } = reservation
      if (reservation.holdsSlot) {
        const slots = slotsOf(tenantId, now)
        slots.delete(reservation.token)
        slots.set(upstreamTaskId, now + staleMs)
      }
      const charged = creditsMilli ?? charge.creditsMilli
      const delta = charged - charge.creditsMilli
      const counters = dayOf(tenantId, day)
      counters.created += 1
      counters.creditsMilli += delta
      monthOf(tenantId, month).creditsMilli += delta
      tasks.set(`${tenantId}\n${upstreamTaskId}`, { tenantId, day, month, creditsMilli: charged, finished: false, ...(endUser == null ? {} : { endUser }) })
      if (endUser != null) {
        const userDay = dayOf(endUserLedger(tenantId, endUser), day)
        userDay.created += 1
        userDay.videoSeconds += charge.videoSeconds
        userDay.creditsMilli += charged
      }
      return { creditsMilli: charged }
    },
    async release ({ tenantId, token, day, month, charge }) {
      inFlight.get(tenantId)?.delete(token)
      for (const counters of [dayOf(tenantId, day), monthOf(tenantId, month)]) {
        counters.creditsMilli -= charge.creditsMilli
        counters.videoSeconds -= charge.videoSeconds
      }
    },
    async finish ({ tenantId, upstreamTaskId, outcome, finalCreditsMilli, now }) {
      inFlight.get(tenantId)?.delete(upstreamTaskId)
      const key = `${tenantId}\n${upstreamTaskId}`
      const task = tasks.get(key)
      if (task?.finished === true) return { first: false, creditsDeltaMilli: 0, settledCreditsMilli: null }
      // A task created before a restart (or by an older version) is still counted once.
      tasks.set(key, { ...(task ?? { tenantId, day: utcDay(now), month: utcMonth(now), creditsMilli: finalCreditsMilli ?? 0 }), finished: true })
      dayOf(tenantId, utcDay(now))[outcome] += 1
      const ledger = task?.endUser === undefined ? null : endUserLedger(tenantId, task.endUser)
      if (ledger !== null) dayOf(ledger, utcDay(now))[outcome] += 1
      if (task === undefined || finalCreditsMilli === null) return { first: true, creditsDeltaMilli: 0, settledCreditsMilli: finalCreditsMilli ?? task?.creditsMilli ?? null }
      const delta = finalCreditsMilli - task.creditsMilli
      dayOf(tenantId, task.day).creditsMilli += delta
      if (ledger !== null) dayOf(ledger, task.day).creditsMilli += delta
      monthOf(tenantId, task.month).creditsMilli += delta
      tasks.set(key, { ...task, creditsMilli: finalCreditsMilli, finished: true })
      return { first: true, creditsDeltaMilli: delta, settledCreditsMilli: finalCreditsMilli }
    },
    async countRequest ({ tenantId, now, endUser }) {
      const day = utcDay(now)
      dayOf(tenantId, day).requests += 1
      if (endUser != null) dayOf(endUserLedger(tenantId, endUser), day).requests += 1
    },
    async countArchived ({ tenantId, videos, bytes, now }) {
      const counters = dayOf(tenantId, utcDay(now))
      counters.archivedVideos += videos
      counters.archivedBytes += bytes
    },
    async report ({ tenantId, days: wanted, endUser }) {
      const ledger = endUser == null ? tenantId : endUserLedger(tenantId, endUser)
      return wanted.map((date) => {
        const counters = days.get(ledger)?.get(date) ?? emptyDay()
        return {
          date,
          requests: counters.requests,
          tasksCreated: counters.created,
          tasksCompleted: counters.completed,
          tasksFailed: counters.failed,
          videoSeconds: counters.videoSeconds,
          creditsMilli: counters.creditsMilli,
          archivedVideos: counters.archivedVideos,
          archivedBytes: counters.archivedBytes
        }
      })
    },
    async close () {}
  }
}
