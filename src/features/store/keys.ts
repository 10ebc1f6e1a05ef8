/**
 * Every Redis key of the gateway, in one map: `<REDIS_KEY_PREFIX><namespace>…`.
 * A store gets its namespace from here and appends its own suffix; nothing else
 * spells a key. Two gateways (or a test run) with different prefixes share one
 * Redis without seeing each other's state.
 */
export interface RedisKeyMap {
  /** task snapshots and fetch claims: `task:<upstream id>` (tasks/cache.ts) */
  task: string
  /** usage counters, budgets, concurrency slots: `usage:{<tenant>}:…` (usage/store/redis.ts; the hash tag keeps one tenant in one slot) */
  usage: string
  /** Idempotency-Key records: `idem:<tenant>:<key>` (idempotency/store/redis.ts) */
  idempotency: string
  /** webhook registrations, deliveries and the due queue: `webhook:…` (webhooks/store.ts) */
  webhook: string
  /** archive records and their queues: `archive:record:<upstream id>`, `archive:due`, `archive:retention` (archive/records.ts) */
  archive: string
  /** browser-token create counters: `token-creates:<token id>` (browser-tokens/create-counter.ts) */
  tokenCreates: string
  /** @fastify/rate-limit counters: `rl:<key>` (store/fallback-rate-limit-store.ts) */
  rateLimit: string
  /** the per-tenant task index: `tasks:{<tenant>}:order`, `tasks:{<tenant>}:entries` (tasks/index-store/redis.ts) */
  taskIndex: string
  /** database mode's usage ledger: one stream, `ledger`, read by every gateway in one consumer group (usage/ledger.ts) */
  ledger: string
}

export const defaultRedisKeyPrefix = 'vg:'

export function redisKeyMap (prefix: string = defaultRedisKeyPrefix): RedisKeyMap {
  return {
    task: `${prefix}task:`,
    usage: `${prefix}usage:`,
    idempotency: `${prefix}idem:`,
    webhook: `${prefix}webhook:`,
    archive: `${prefix}archive:`,
    tokenCreates: `${prefix}token-creates:`,
    rateLimit: `${prefix}rl:`,
    taskIndex: `${prefix}tasks:`,
    ledger: `${prefix}ledger`
  }
}
