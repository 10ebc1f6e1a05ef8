import type { Redis } from 'ioredis'
import { budgetLimitInUnits, budgetNames, budgetResetsAt, taskChargeTtlMs, usageRetentionMs, type BudgetName, type UsageStore } from './usage-store.ts'
import { utcDay, utcMonth } from './usage-windows.ts'
import { defineScript } from './redis-script.ts'

/**
 * The usage store shared by every instance. Keys of one tenant share the hash
 * tag `{<tenant id>}`, so each script touches one slot:
 *   <ns>{t}:inflight        sorted set: task (or reservation token) → stale deadline (ms)
 *   <ns>{t}:day:YYYY-MM-DD  hash: requests, created, completed, failed, video_seconds, credits_milli
 *   <ns>{t}:month:YYYY-MM   hash: video_seconds, credits_milli (what monthly budgets read)
 *   <ns>{t}:task:<upstream id>  hash: day, month, credits_milli, finished
 *   <ns>owner:<upstream id>  the tenant whose create made the task (for callbacks, which know only the upstream id)
 * Each step is one script: Redis runs it alone, so 50 creates racing for the
 * last slots of a budget, from any number of instances, admit exactly as many
 * as fit.
 */

/**
 * KEYS: inflight, day, month. ARGV: now, stale deadline, token, max concurrent (-1: none),
 * credits, video seconds, then four limits in budgetNames order (-1: none), day ttl, month ttl.
 * Answers {1} (admitted), {0, 'concurrency'}, or {0, <budget name>}.
 */
// One request more in the day's hash (and its end user's, ARGV[2], when a browser token made it),
// which lives for the retention period: one command, not MULTI/EXEC's four.
const countRequestScript = `
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HINCRBY', ARGV[2], 'requests', 1)
  redis.call('PEXPIRE', ARGV[2], ARGV[1])
end
return 1`

const admitScript = `
local maxConcurrent = tonumber(ARGV[4])
if maxConcurrent >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[1]) >= maxConcurrent then return {0, 'concurrency'} end
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
    if used + check[3] > limit then return {0, check[4]} end
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
return {1}`

/**
 * KEYS: inflight, day, month, task. ARGV: token, upstream id, stale deadline,
 * credits delta (actual - estimate), actual credits, day, month, task ttl, stale ms,
 * holds a slot (1: the tenant has a concurrency cap, so the task moves from token to id in the set),
 * the end user's ledger prefix ('' : none), video seconds, day ttl. The ledger prefix is kept in the
 * task's hash, so that its end is counted for the end user too.
 * (Deadlines are scores on the gateway's clock; key expiries are relative, on
 * Redis's: the set outlives its newest member.)
 */
const settleScript = `
if ARGV[10] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[9])
end
redis.call('HINCRBY', KEYS[2], 'created', 1)
redis.call('HINCRBY', KEYS[2], 'credits_milli', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'credits_milli', ARGV[4])
redis.call('HSET', KEYS[4], 'day', ARGV[6], 'month', ARGV[7], 'credits_milli', ARGV[5])
if ARGV[11] ~= '' then
  local userDay = ARGV[11] .. 'day:' .. ARGV[6]
  redis.call('HINCRBY', userDay, 'created', 1)
  redis.call('HINCRBY', userDay, 'video_seconds', ARGV[12])
  redis.call('HINCRBY', userDay, 'credits_milli', ARGV[5])
  redis.call('PEXPIRE', userDay, ARGV[13])
  redis.call('HSET', KEYS[4], 'end_user', ARGV[11])
end
redis.call('PEXPIRE', KEYS[4], ARGV[8])
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
 * KEYS: inflight, task, today. ARGV: upstream id, outcome field, final credits (-1: unknown),
 * task ttl, key prefix of the tenant (for the create's day and month), day ttl, today's name.
 * Answers {first (0/1), credits delta}.
 */
const finishScript = `
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HSETNX', KEYS[2], 'finished', '1') == 0 then return {0, 0} end
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
if final < 0 or not charged then return {1, 0} end
local delta = final - tonumber(charged)
if delta ~= 0 then
  redis.call('HINCRBY', ARGV[5] .. 'day:' .. redis.call('HGET', KEYS[2], 'day'), 'credits_milli', delta)
  redis.call('HINCRBY', ARGV[5] .. 'month:' .. redis.call('HGET', KEYS[2], 'month'), 'credits_milli', delta)
  redis.call('HSET', KEYS[2], 'credits_milli', final)
  if userPrefix then redis.call('HINCRBY', userPrefix .. 'day:' .. redis.call('HGET', KEYS[2], 'day'), 'credits_milli', delta) end
end
return {1, delta}`

const monthRetentionMs = usageRetentionMs + 31 * 24 * 60 * 60 * 1000

export function createRedisUsageStore (options: { redis: Redis, nameSpace: string }): UsageStore {
  const { redis, nameSpace } = options
  const admit = defineScript(redis, { name: 'vgUsageAdmit', lua: admitScript, numberOfKeys: 3 })
  const settle = defineScript(redis, { name: 'vgUsageSettle', lua: settleScript, numberOfKeys: 4 })
  const release = defineScript(redis, { name: 'vgUsageRelease', lua: releaseScript, numberOfKeys: 3 })
  const finish = defineScript(redis, { name: 'vgUsageFinish', lua: finishScript, numberOfKeys: 3 })
  const countRequest = defineScript(redis, { name: 'vgUsageCountRequest', lua: countRequestScript, numberOfKeys: 1 })
  const prefix = (tenantId: string): string => `${nameSpace}{${tenantId}}:`
  // In the tenant's hash slot ({tenant}), beside its own days.
  const userPrefix = (tenantId: string, endUser: string | null | undefined): string => endUser == null ? '' : `${prefix(tenantId)}user:${endUser}:`
  const keys = (tenantId: string, day: string, month: string): [string, string, string] =>
    [`${prefix(tenantId)}inflight`, `${prefix(tenantId)}day:${day}`, `${prefix(tenantId)}month:${month}`]

  return {
    async admit ({ tenantId, token, charge, limits, now }) {
      const day = utcDay(now)
      const month = utcMonth(now)
      const budgetLimits = budgetNames.map((name) => {
        const limit = limits.budget?.[name]
        return limit === undefined ? -1 : budgetLimitInUnits(name, limit)
      })
      const answer = await admit(...keys(tenantId, day, month),
        now, now + limits.staleMs, token, limits.maxConcurrentTasks ?? -1, charge.creditsMilli, charge.videoSeconds,
        ...budgetLimits, usageRetentionMs, monthRetentionMs) as [number, string?]
      if (answer[0] === 1) return { admitted: true, reservation: { tenantId, token, day, month, charge, holdsSlot: limits.maxConcurrentTasks !== null } }
      if (answer[1] === 'concurrency') return { admitted: false, reason: 'concurrency', limit: limits.maxConcurrentTasks ?? 0 }
      const budget = answer[1] as BudgetName
      return { admitted: false, reason: 'budget', budget, limit: limits.budget?.[budget] ?? 0, resetsAt: budgetResetsAt(budget, now) }
    },
    async settle ({ reservation, upstreamTaskId, creditsMilli, staleMs, now, endUser }) {
      const { tenantId, day, month, charge } = reservation
      const charged = creditsMilli ?? charge.creditsMilli
      // One round trip: the settlement, and (a key of its own, outside the tenant's slot) the task's owner.
      // The settlement, and (a key of its own, outside the tenant's slot) the task's owner:
      // sent together, so one round trip on the connection.
      await Promise.all([
        settle(...keys(tenantId, day, month), `${prefix(tenantId)}task:${upstreamTaskId}`,
          reservation.token, upstreamTaskId, now + staleMs, charged - charge.creditsMilli, charged, day, month, taskChargeTtlMs, staleMs, reservation.holdsSlot ? 1 : 0,
          userPrefix(tenantId, endUser), charge.videoSeconds, usageRetentionMs),
        redis.set(`${nameSpace}owner:${upstreamTaskId}`, tenantId, 'PX', taskChargeTtlMs)
      ])
      return { creditsMilli: charged }
    },
    async release ({ tenantId, token, day, month, charge }) {
      await release(...keys(tenantId, day, month), token, charge.creditsMilli, charge.videoSeconds)
    },
    async finish ({ tenantId, upstreamTaskId, outcome, finalCreditsMilli, now }) {
      const answer = await finish(`${prefix(tenantId)}inflight`, `${prefix(tenantId)}task:${upstreamTaskId}`, `${prefix(tenantId)}day:${utcDay(now)}`,
        upstreamTaskId, outcome, finalCreditsMilli ?? -1, taskChargeTtlMs, prefix(tenantId), usageRetentionMs, utcDay(now)) as [number, number]
      return { first: answer[0] === 1, creditsDeltaMilli: answer[1] }
    },
    async ownerOf (upstreamTaskId) {
      return await redis.get(`${nameSpace}owner:${upstreamTaskId}`)
    },
    async countRequest ({ tenantId, now, endUser }) {
      const day = utcDay(now)
      const user = userPrefix(tenantId, endUser)
      await countRequest(`${prefix(tenantId)}day:${day}`, usageRetentionMs, user === '' ? '' : `${user}day:${day}`)
    },
    async report ({ tenantId, days, endUser }) {
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
          creditsMilli: count('credits_milli')
        }
      })
    }
  }
}
