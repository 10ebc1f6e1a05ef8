import type { Redis } from 'ioredis'
import { budgetLimitInUnits, budgetNames, budgetResetsAt, taskChargeTtlMs, usageRetentionMs, type BudgetName, type UsageStore } from './memory.ts'
import { msPerDay, utcDay, utcMonth } from '../windows.ts'
import { defineScript } from '../../store/redis-script.ts'
import type { WriteBehind } from '../../store/write-behind.ts'
import { taskIndexAddLua, type TaskIndexWrite } from '../../tasks/index-store/redis.ts'

/**
 * The usage store shared by every instance. Keys of one tenant share the hash
 * tag `{<tenant id>}`, so each script touches one slot:
 *   <ns>{t}:inflight        sorted set: task (or reservation token) → stale deadline (ms)
 *   <ns>{t}:day:YYYY-MM-DD  hash: requests, created, completed, failed, video_seconds, credits_milli, archived_videos, archived_bytes
 *   <ns>{t}:month:YYYY-MM   hash: video_seconds, credits_milli (what monthly budgets read)
 *   <ns>{t}:task:<upstream id>  hash: day, month, credits_milli, finished
 * Each step is one script: Redis runs it alone, so 50 creates racing for the
 * last slots of a budget, from any number of instances, admit exactly as many
 * as fit.
 */

/**
 * KEYS: inflight, day, month, the rate-limit counter (any key of the tenant's slot when there is none).
 * ARGV: now, stale deadline, token, max concurrent (-1: none), credits, video seconds, then four limits
 * in budgetNames order (-1: none), day ttl, month ttl, the rate limit's window (ms) and max (-1: none).
 * Answers {1, count, ttl} (admitted), {0, 'rate', count, ttl}, {0, 'concurrency', count, ttl}, or
 * {0, <budget name>, count, ttl} (count and ttl: the rate-limit window's, 0 without one).
 * The rate limit counts first, as @fastify/rate-limit's own script does (INCR; the window starts with
 * its first request, fixed), so that a create costs one round trip for its limit, slot and budgets;
 * a request past it is refused before anything else is looked at, and takes nothing.
 */
const admitScript = `
local count, ttl = 0, 0
if tonumber(ARGV[14]) >= 0 then
  count = redis.call('INCR', KEYS[4])
  if count == 1 then
    ttl = tonumber(ARGV[13])
    redis.call('PEXPIRE', KEYS[4], ttl)
  else
    ttl = redis.call('PTTL', KEYS[4])
  end
  if count > tonumber(ARGV[14]) then return {0, 'rate', count, ttl} end
end
local maxConcurrent = tonumber(ARGV[4])
if maxConcurrent >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[1]) >= maxConcurrent then return {0, 'concurrency', count, ttl} end
end
local credits = tonumber(ARGV[5])
local seconds = tonumber(ARGV[6])
local checks = {
  {KEYS[2], 'credits_milli', credits, 'creditsPerDay'},
  {KEYS[3], 'credits_milli', credits, 'creditsPerMonth'},
  {KEYS[2], 'video_seconds', seconds, 'videoSecondsPerDay'},
  {KEYS[3], 'video_seconds', seconds, 'videoSecondsPerMonth'}
}
for i, check in ipairs(checks) do
  local limit = tonumber(ARGV[6 + i])
  if limit >= 0 then
    local used = tonumber(redis.call('HGET', check[1], check[2]) or '0')
    if used + check[3] > limit then return {0, check[4], count, ttl} end
  end
end
if maxConcurrent >= 0 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2] - ARGV[1])
end
for i = 2, 3 do
  redis.call('HINCRBY', KEYS[i], 'credits_milli', credits)
  redis.call('HINCRBY', KEYS[i], 'video_seconds', seconds)
  redis.call('PEXPIRE', KEYS[i], ARGV[9 + i])
end
return {1, count, ttl}`

/**
 * KEYS: inflight, day, month, task, the usage ledger's stream, then the task index's order and
 * entries (tasks/index-store/redis.ts). ARGV: token, upstream id, stale deadline,
 * credits delta (actual - estimate), actual credits, day, month, task ttl, stale ms,
 * holds a slot (1: the tenant has a concurrency cap, so the task moves from token to id in the set),
 * the end user's ledger prefix ('' : none), video seconds, day ttl, the usage ledger's entry ('' : none),
 * then the index entry: id ('' : none), rank, JSON, max per tenant, oldest rank kept.
 * The end user's prefix is kept in the task's hash, so that its end is counted for the end user too.
 * KEYS[5] is the usage ledger's stream (database mode, usage/ledger.ts): its entry rides on this
 * script, the one write a create makes after the upstream answered, so the ledger costs no round trip.
 * The task index's entry rides on it too (one script, one slot: both are under the tenant's hash tag).
 * This write is sent behind the answer (store/write-behind.ts) and may be sent again after a
 * failure: the task's `day` field says it ran already, so a second run counts nothing twice. A task
 * seen finished before its settlement landed (a retry after an outage) takes no slot.
 * (Deadlines are scores on the gateway's clock; key expiries are relative, on
 * Redis's: the set outlives its newest member.)
 */
const settleScript = `
if redis.call('HSETNX', KEYS[4], 'day', ARGV[6]) == 1 then
  if ARGV[10] == '1' then
    redis.call('ZREM', KEYS[1], ARGV[1])
    if redis.call('HEXISTS', KEYS[4], 'finished') == 0 then
      redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
      redis.call('PEXPIRE', KEYS[1], ARGV[9])
    end
  end
  redis.call('HINCRBY', KEYS[2], 'created', 1)
  redis.call('HINCRBY', KEYS[2], 'credits_milli', ARGV[4])
  redis.call('HINCRBY', KEYS[3], 'credits_milli', ARGV[4])
  redis.call('HSET', KEYS[4], 'month', ARGV[7], 'credits_milli', ARGV[5])
  if ARGV[11] ~= '' then
    local userDay = ARGV[11] .. 'day:' .. ARGV[6]
    redis.call('HINCRBY', userDay, 'created', 1)
    redis.call('HINCRBY', userDay, 'video_seconds', ARGV[12])
    redis.call('HINCRBY', userDay, 'credits_milli', ARGV[5])
    redis.call('PEXPIRE', userDay, ARGV[13])
    redis.call('HSET', KEYS[4], 'end_user', ARGV[11])
  end
  redis.call('PEXPIRE', KEYS[4], ARGV[8])
  if ARGV[14] ~= '' then redis.call('XADD', KEYS[5], '*', 'c', ARGV[14]) end
end
if ARGV[15] ~= '' then
${taskIndexAddLua(6, 15)}
end
return 1`

/** KEYS: inflight, day, month. ARGV: token, credits, video seconds. */
const releaseScript = `
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, 3 do
  redis.call('HINCRBY', KEYS[i], 'credits_milli', -tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[i], 'video_seconds', -tonumber(ARGV[3]))
end
return 1`

/**
 * KEYS: inflight, task, today, the usage ledger's stream. ARGV: upstream id, outcome field, final
 * credits (-1: unknown), task ttl, key prefix of the tenant (for the create's day and month), day ttl,
 * today's name, the usage ledger's entry ('' : none; added once per task, with the settled credits).
 * Answers {first (0/1), credits delta, settled credits (-1: unknown)}.
 */
const finishScript = `
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HSETNX', KEYS[2], 'finished', '1') == 0 then return {0, 0, -1} end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('PEXPIRE', KEYS[3], ARGV[6])
local userPrefix = redis.call('HGET', KEYS[2], 'end_user')
if userPrefix then
  redis.call('HINCRBY', userPrefix .. 'day:' .. ARGV[7], ARGV[2], 1)
  redis.call('PEXPIRE', userPrefix .. 'day:' .. ARGV[7], ARGV[6])
end
local final = tonumber(ARGV[3])
local charged = redis.call('HGET', KEYS[2], 'credits_milli')
local settled = ''
if final >= 0 then settled = ARGV[3] elseif charged then settled = charged end
if ARGV[8] ~= '' then redis.call('XADD', KEYS[4], '*', 'f', ARGV[8], 's', settled) end
if final < 0 or not charged then return {1, 0, settled == '' and -1 or tonumber(settled)} end
local delta = final - tonumber(charged)
if delta ~= 0 then
  redis.call('HINCRBY', ARGV[5] .. 'day:' .. redis.call('HGET', KEYS[2], 'day'), 'credits_milli', delta)
  redis.call('HINCRBY', ARGV[5] .. 'month:' .. redis.call('HGET', KEYS[2], 'month'), 'credits_milli', delta)
  redis.call('HSET', KEYS[2], 'credits_milli', final)
  if userPrefix then redis.call('HINCRBY', userPrefix .. 'day:' .. redis.call('HGET', KEYS[2], 'day'), 'credits_milli', delta) end
end
return {1, delta, final}`

const monthRetentionMs = usageRetentionMs + 31 * msPerDay

export interface RedisUsageStoreOptions {
  redis: Redis
  keyPrefix: string
  /** how long request counts gather in memory before they are written, in one pipeline (default 1000 ms) */
  requestCountFlushMs?: number
  /** how many day-hashes may wait to be written (default 100,000): a bound on memory through a Redis outage */
  maxPendingRequestCounts?: number
  /** the usage ledger's stream (database mode): settle and finish add its entries (default: a key nothing reads, never written) */
  ledgerStream?: string
  /** settlements go behind the answer, batched (store/write-behind.ts); without it settle() awaits Redis's answer */
  writeBehind?: WriteBehind
}

export function createRedisUsageStore (options: RedisUsageStoreOptions): UsageStore {
  const { redis, keyPrefix, writeBehind } = options
  const requestCounts = createRequestCountBatcher({ redis, flushMs: options.requestCountFlushMs ?? 1000, maxPendingKeys: options.maxPendingRequestCounts ?? 100_000 })
  const admit = defineScript(redis, { name: 'vgUsageAdmit', lua: admitScript, numberOfKeys: 4 })
  const settle = defineScript(redis, { name: 'vgUsageSettle', lua: settleScript, numberOfKeys: 7 })
  const release = defineScript(redis, { name: 'vgUsageRelease', lua: releaseScript, numberOfKeys: 3 })
  const finish = defineScript(redis, { name: 'vgUsageFinish', lua: finishScript, numberOfKeys: 4 })
  // Without the ledger no entry is ever given, so this key is only named, never written.
  const ledgerStream = options.ledgerStream ?? `${keyPrefix}ledger-off`
  const prefix = (tenantId: string): string => `${keyPrefix}{${tenantId}}:`
  // In the tenant's hash slot ({tenant}), beside its own days.
  const userPrefix = (tenantId: string, endUser: string | null | undefined): string => endUser == null ? '' : `${prefix(tenantId)}user:${endUser}:`
  const keys = (tenantId: string, day: string, month: string): [string, string, string] =>
    [`${prefix(tenantId)}inflight`, `${prefix(tenantId)}day:${day}`, `${prefix(tenantId)}month:${month}`]

  return {
    async admit ({ tenantId, token, charge, limits, now, rateLimit }) {
      const day = utcDay(now)
      const month = utcMonth(now)
      const budgetLimits = budgetNames.map((name) => {
        const limit = limits.budget?.[name]
        return limit === undefined ? -1 : budgetLimitInUnits(name, limit)
      })
      const tenantKeys = keys(tenantId, day, month)
      const answer = await admit(...tenantKeys, rateLimit?.key ?? tenantKeys[0],
        now, now + limits.staleMs, token, limits.maxConcurrentTasks ?? -1, charge.creditsMilli, charge.videoSeconds,
        ...budgetLimits, usageRetentionMs, monthRetentionMs, rateLimit?.timeWindowMs ?? 0, rateLimit?.max ?? -1) as [number, ...Array<string | number>]
      const counted = rateLimit == null ? {} : { rateLimit: { current: Number(answer[answer.length - 2]), ttlMs: Math.max(0, Number(answer[answer.length - 1])) } }
      if (answer[0] === 1) return { admitted: true, reservation: { tenantId, token, day, month, charge, at: now, holdsSlot: limits.maxConcurrentTasks !== null }, ...counted }
      if (answer[1] === 'rate') return { admitted: false, reason: 'rate', max: rateLimit?.max ?? 0, ...counted }
      if (answer[1] === 'concurrency') return { admitted: false, reason: 'concurrency', limit: limits.maxConcurrentTasks ?? 0, ...counted }
      const budget = answer[1] as BudgetName
      return { admitted: false, reason: 'budget', budget, limit: limits.budget?.[budget] ?? 0, resetsAt: budgetResetsAt(budget, now), ...counted }
    },
    async settle ({ reservation, upstreamTaskId, creditsMilli, staleMs, now, endUser, ledgerEntry, index, onFailure }) {
      const { tenantId, day, month, charge } = reservation
      const charged = creditsMilli ?? charge.creditsMilli
      const tenantKeys = keys(tenantId, day, month)
      // Without an entry, keys of the tenant's own slot are named (never touched) in the index's place.
      const indexWrite: TaskIndexWrite = index ?? { keys: [tenantKeys[0], tenantKeys[0]], args: ['', 0, '', 0, 0] }
      const args = [...tenantKeys, `${prefix(tenantId)}task:${upstreamTaskId}`, ledgerStream, ...indexWrite.keys,
        reservation.token, upstreamTaskId, now + staleMs, charged - charge.creditsMilli, charged, day, month, taskChargeTtlMs, staleMs, reservation.holdsSlot ? 1 : 0,
        userPrefix(tenantId, endUser), charge.videoSeconds, usageRetentionMs, ledgerEntry ?? '', ...indexWrite.args]
      if (writeBehind === undefined) {
        await settle(...args)
      } else {
        await writeBehind.send({ add: (pipeline) => { settle.queue(pipeline, ...args) }, onFailure: onFailure ?? (() => {}) })
      }
      return { creditsMilli: charged }
    },
    async release ({ tenantId, token, day, month, charge }) {
      await release(...keys(tenantId, day, month), token, charge.creditsMilli, charge.videoSeconds)
    },
    async finish ({ tenantId, upstreamTaskId, outcome, finalCreditsMilli, now, ledgerEntry }) {
      const answer = await finish(`${prefix(tenantId)}inflight`, `${prefix(tenantId)}task:${upstreamTaskId}`, `${prefix(tenantId)}day:${utcDay(now)}`, ledgerStream,
        upstreamTaskId, outcome, finalCreditsMilli ?? -1, taskChargeTtlMs, prefix(tenantId), usageRetentionMs, utcDay(now), ledgerEntry ?? '') as [number, number, number]
      return { first: answer[0] === 1, creditsDeltaMilli: answer[1], settledCreditsMilli: answer[2] < 0 ? null : answer[2] }
    },
    async countRequest ({ tenantId, now, endUser }) {
      const day = utcDay(now)
      requestCounts.add(`${prefix(tenantId)}day:${day}`)
      if (endUser != null) requestCounts.add(`${userPrefix(tenantId, endUser)}day:${day}`)
    },
    async countArchived ({ tenantId, videos, bytes, now }) {
      const key = `${prefix(tenantId)}day:${utcDay(now)}`
      await redis.multi().hincrby(key, 'archived_videos', videos).hincrby(key, 'archived_bytes', bytes).pexpire(key, usageRetentionMs).exec()
    },
    async report ({ tenantId, days, endUser }) {
      // This instance's own counts are written before it reads: its report is exact for them.
      await requestCounts.flush()
      const ledger = endUser == null ? prefix(tenantId) : userPrefix(tenantId, endUser)
      const pipeline = redis.pipeline()
      for (const day of days) pipeline.hgetall(`${ledger}day:${day}`)
      const results = await pipeline.exec()
      return days.map((date, index) => {
        const [error, fields] = results?.[index] ?? [new Error('no answer'), null]
        if (error !== null) throw error
        const counters = fields as Record<string, string>
        const count = (field: string): number => Number(counters[field] ?? 0)
        return {
          date,
          requests: count('requests'),
          tasksCreated: count('created'),
          tasksCompleted: count('completed'),
          tasksFailed: count('failed'),
          videoSeconds: count('video_seconds'),
          creditsMilli: count('credits_milli'),
          archivedVideos: count('archived_videos'),
          archivedBytes: count('archived_bytes')
        }
      })
    },
    async close () {
      await requestCounts.close()
    }
  }
}

/**
 * Request counts are the one write every request makes. Sending each as its own
 * command cost more CPU than anything else a read does in Redis mode (profiled), so
 * they gather in memory per day-hash and go out together: at most one pipeline
 * per `flushMs`, one HINCRBY (and PEXPIRE) per hash however many requests it holds.
 * The price: another instance's report may lag by up to `flushMs`, and an instance
 * that dies without closing loses at most that much of its counts. A failed write
 * keeps its counts for the next one, until close: its write is the last attempt.
 * Through a long outage the waiting hashes (one per tenant or end user, per day)
 * are bounded by `maxPendingKeys`: a count for a new hash beyond it is refused,
 * as every count was before batching while Redis was away.
 */
function createRequestCountBatcher (options: { redis: Redis, flushMs: number, maxPendingKeys: number }): { add (key: string): void, flush (): Promise<void>, close (): Promise<void> } {
  let pending = new Map<string, number>()
  let timer: NodeJS.Timeout | null = null
  let inFlight: Promise<void> = Promise.resolve()
  let closed = false

  async function write (counts: Map<string, number>): Promise<void> {
    const pipeline = options.redis.pipeline()
    for (const [key, count] of counts) pipeline.hincrby(key, 'requests', count).pexpire(key, usageRetentionMs)
    const results = await pipeline.exec().catch((error: unknown) => [[error, null]] as const)
    if (results?.some(([error]) => error !== null) ?? true) {
      // Not written: counted again with the next ones (HINCRBY of a pipeline that failed part way may
      // have landed for some hashes; a count twice is rarer and cheaper than a count lost on every blip).
      // (The bound holds here too: hashes beyond it lose this batch's counts.)
      for (const [key, count] of counts) keep(key, count)
      schedule()
    }
  }
  function flush (): Promise<void> {
    if (timer !== null) {
      clearTimeout(timer)
      timer = null
    }
    if (pending.size > 0) {
      const counts = pending
      pending = new Map()
      // Writes stay in order: a flush waits for the one before it.
      inFlight = inFlight.then(() => write(counts))
    }
    return inFlight
  }
  /** Adds to a waiting hash's count; false when it is a new hash and `maxPendingKeys` are already waiting. */
  function keep (key: string, count: number): boolean {
    const waiting = pending.get(key)
    if (waiting === undefined && pending.size >= options.maxPendingKeys) return false
    pending.set(key, (waiting ?? 0) + count)
    return true
  }
  function schedule (): void {
    // flush() never rejects: a failed write keeps its counts. After close nothing retries
    // (the connection is about to quit): close() reports what it could not write.
    if (timer === null && !closed) timer = setTimeout(flush, options.flushMs).unref()
  }
  return {
    add (key) {
      if (!keep(key, 1)) throw new Error(`request count not kept: ${pending.size} day-hashes are already waiting to be written to Redis`)
      schedule()
    },
    flush,
    async close () {
      closed = true
      await flush()
      if (pending.size > 0) {
        const lost = [...pending.values()].reduce((sum, count) => sum + count, 0)
        pending = new Map()
        throw new Error(`${lost} request counts could not be written to Redis before close`)
      }
    }
  }
}
