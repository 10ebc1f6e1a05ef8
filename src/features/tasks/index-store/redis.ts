import type { Redis } from 'ioredis'
import { defineScript } from '../../store/redis-script.ts'
import type { TaskIndexEntry, TaskIndexLimits, TaskIndexStore } from './memory.ts'

// KEYS: order (sorted set: id by rank), entries (hash: id → JSON). ARGV: id, rank, json, max, oldest rank.
const addLua = `
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local dropped = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[5])
local excess = redis.call('ZCARD', KEYS[1]) - #dropped - tonumber(ARGV[4])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], #dropped, #dropped + excess - 1)
  for _, id in ipairs(oldest) do dropped[#dropped + 1] = id end
end
if #dropped > 0 then
  redis.call('ZREM', KEYS[1], unpack(dropped))
  redis.call('HDEL', KEYS[2], unpack(dropped))
end
return #dropped`

// KEYS: order, entries. ARGV: after ('' for none), limit, order ('asc' | 'desc'). Answers limit + 1 entries at most, or nil for an unknown cursor.
const listLua = `
local start = 0
local desc = ARGV[3] == 'desc'
if ARGV[1] ~= '' then
  local rank
  if desc then rank = redis.call('ZREVRANK', KEYS[1], ARGV[1]) else rank = redis.call('ZRANK', KEYS[1], ARGV[1]) end
  if not rank then return false end
  start = rank + 1
end
local stop = start + tonumber(ARGV[2])
local ids
if desc then ids = redis.call('ZREVRANGE', KEYS[1], start, stop) else ids = redis.call('ZRANGE', KEYS[1], start, stop) end
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))`

const removeLua = `
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])`

/**
 * The index in Redis: per tenant one sorted set (ids by creation time) and one
 * hash (the entries), under one hash tag so a tenant's keys share a cluster
 * slot. Bounded per tenant by count and retention, trimmed on every add.
 */
export function createRedisTaskIndexStore (options: TaskIndexLimits & { redis: Redis, keyPrefix: string }): TaskIndexStore {
  const { redis } = options
  const add = defineScript(redis, { name: 'vgTaskIndexAdd', lua: addLua, numberOfKeys: 2 })
  const list = defineScript(redis, { name: 'vgTaskIndexList', lua: listLua, numberOfKeys: 2 })
  const remove = defineScript(redis, { name: 'vgTaskIndexRemove', lua: removeLua, numberOfKeys: 2 })
  const keys = (tenantId: string): [string, string] => [`${options.keyPrefix}{${tenantId}}:order`, `${options.keyPrefix}{${tenantId}}:entries`]

  return {
    async add (tenantId, entry) {
      const oldestRank = (options.now() - options.retentionMs) * 1000
      await add(...keys(tenantId), entry.id, entry.rank, JSON.stringify(entry), options.maxEntriesPerTenant, oldestRank)
    },
    async get (tenantId, id) {
      const json = await redis.hget(keys(tenantId)[1], id)
      return json === null ? null : JSON.parse(json) as TaskIndexEntry
    },
    async list (tenantId, listOptions) {
      const answer = await list(...keys(tenantId), listOptions.after ?? '', listOptions.limit, listOptions.order) as Array<string | null> | null
      if (answer === null) return null
      const entries = answer.filter((json) => json !== null).map((json) => JSON.parse(json) as TaskIndexEntry)
      const hasMore = entries.length > listOptions.limit
      return { entries: entries.slice(0, listOptions.limit), hasMore }
    },
    async remove (tenantId, id) {
      return await remove(...keys(tenantId), id) === 1
    }
  }
}
