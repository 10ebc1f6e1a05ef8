import type { Redis } from 'ioredis'
import { defineScript, type RedisScriptArgument } from '../../store/redis-script.ts'
import type { TaskIndexEntry, TaskIndexLimits, TaskIndexStore } from './memory.ts'

/**
 * The add, as a piece of Lua that other scripts include (the usage store's settlement carries
 * a create's entry: one script per create): KEYS[k]: order (sorted set: id by rank),
 * KEYS[k+1]: entries (hash: id → JSON); ARGV[a..a+4]: id, rank, json, max, oldest rank.
 */
export function taskIndexAddLua (k: number, a: number): string {
  const order = `KEYS[${k}]`
  const entries = `KEYS[${k + 1}]`
  const [id, rank, json, max, oldestRank] = [0, 1, 2, 3, 4].map((offset) => `ARGV[${a + offset}]`)
  return `
redis.call('ZADD', ${order}, ${rank}, ${id})
redis.call('HSET', ${entries}, ${id}, ${json})
local dropped = redis.call('ZRANGEBYSCORE', ${order}, '-inf', '(' .. ${oldestRank})
local excess = redis.call('ZCARD', ${order}) - #dropped - tonumber(${max})
if excess > 0 then
  local oldest = redis.call('ZRANGE', ${order}, #dropped, #dropped + excess - 1)
  for _, id in ipairs(oldest) do dropped[#dropped + 1] = id end
end
if #dropped > 0 then
  redis.call('ZREM', ${order}, unpack(dropped))
  redis.call('HDEL', ${entries}, unpack(dropped))
end`
}

const addLua = `${taskIndexAddLua(1, 1)}
return 1`

/** An add, as the keys and arguments of `taskIndexAddLua` (for a script that carries it). */
export interface TaskIndexWrite {
  keys: [string, string]
  args: [id: string, rank: number, json: string, max: number, oldestRank: number]
}

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

  const writeOf = (tenantId: string, entry: TaskIndexEntry): TaskIndexWrite => ({
    keys: keys(tenantId),
    args: [entry.id, entry.rank, JSON.stringify(entry), options.maxEntriesPerTenant, (options.now() - options.retentionMs) * 1000]
  })

  return {
    async add (tenantId, entry) {
      const write = writeOf(tenantId, entry)
      await add(...write.keys, ...write.args as RedisScriptArgument[])
    },
    writeOf,
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
