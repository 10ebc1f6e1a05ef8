import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Database } from '../database/plugin.ts'
import { fromMilli } from './charge.ts'
import { msPerDay } from './windows.ts'
import type { TaskOutcome } from './store/memory.ts'

/**
 * Database mode's usage ledger: one PostgreSQL row per task the upstream created
 * for a tenant (migrations/1765200000000_usage-ledger.sql), settled in place when
 * the gateway sees the task finish. Nothing here runs on the request path:
 *
 * - With Redis, a create's entry is added to one Redis stream by the usage store's
 *   settle script, the write a create makes anyway after the upstream answered (sent
 *   behind the answer, store/write-behind.ts, but written to the connection before it:
 *   no round trip, and the entry is on its way before the client gets its 200); a
 *   task's end is added by the finish script, once per task. Every gateway reads
 *   the stream in one consumer group, writes a batch with one upsert, and only then
 *   acknowledges (XACK) and deletes its entries: a gateway killed between the read
 *   and the commit leaves them pending under its name, and a live one claims them
 *   (XAUTOCLAIM) once they have been idle for `claimIdleMs`. Upserts are
 *   idempotent and order-free, so an entry written twice, or a task's end written
 *   before its create, makes the same row.
 * - Without Redis (or when a Redis write failed), entries wait in this process's
 *   memory and are written every `flushMs`: a crash loses what waited (at most
 *   `flushMs` of creates, more while PostgreSQL is unreachable). docs/operations.md,
 *   "Usage ledger", says so.
 */

export interface LedgerCreate {
  kind: 'create'
  tenantId: string
  upstreamTaskId: string
  /** the tenant-scoped id the client was answered */
  taskId: string
  endUser: string | null
  model: string
  videoSeconds: number
  /** what the create charged: the upstream's usage.credits_reserved, or the gateway's estimate */
  creditsMilli: number
  /** when the create was admitted (ms) */
  createdAt: number
}

export interface LedgerFinish {
  kind: 'finish'
  tenantId: string
  upstreamTaskId: string
  outcome: TaskOutcome
  /** the task's final charge (its final usage, else its create's charge); null when the store no longer knows it */
  settledCreditsMilli: number | null
  finishedAt: number
}

export type LedgerEvent = LedgerCreate | LedgerFinish

/** One day of the ledger, in the units of the usage counters. */
export interface LedgerDay {
  tasksCreated: number
  tasksCompleted: number
  tasksFailed: number
  videoSeconds: number
  creditsMilli: number
}

export interface LedgerRow {
  taskId: string | null
  upstreamTaskId: string
  tenantId: string
  endUser: string | null
  model: string | null
  videoSeconds: number | null
  /** numeric(16,3) as PostgreSQL prints it (`12.000`), or null */
  creditsEstimated: string | null
  creditsSettled: string | null
  status: string
  /** ISO 8601, UTC, ms */
  createdAt: string | null
  finishedAt: string | null
}

export interface LedgerQuery {
  tenantId: string
  /** first day's start and last day's start (ms, inclusive) */
  fromMs: number
  toMs: number
  endUser: string | null
}

export interface UsageLedger {
  /** the Redis stream the usage store's scripts add entries to; null without Redis */
  readonly stream: string | null
  /** keeps an entry in memory until the next write (no Redis, or a Redis write that failed) */
  append (event: LedgerEvent): void
  /** writes everything there is to write right now; rejects when PostgreSQL (or Redis) fails */
  flush (): Promise<void>
  /** the tenant's days (`YYYY-MM-DD` → counts): creates by the day they were admitted, ends by the day they were seen */
  report (query: LedgerQuery): Promise<Map<string, LedgerDay>>
  /** the rows of creates admitted in the period, oldest first, a page at a time */
  rows (query: LedgerQuery): AsyncGenerator<LedgerRow[]>
  /** a last write (the app's close) */
  close (): Promise<void>
}

export interface UsageLedgerOptions {
  database: Database
  /** null: entries wait in memory only */
  redis: Redis | null
  /** the stream's key (REDIS_KEY_PREFIX + `ledger`) */
  streamKey: string
  /** LEDGER_FLUSH_MS: how often waiting entries are written */
  flushMs: number
  /** LEDGER_CLAIM_IDLE_MS: a stream entry read by a gateway that has not acknowledged it this long is taken over */
  claimIdleMs: number
  log: FastifyBaseLogger
  /** entries per upsert (default 500) */
  batchSize?: number
  /** entries kept in memory at most (default 100,000): a bound through a long PostgreSQL outage */
  maxBuffered?: number
  /** the app's metrics registry (vg_usage_ledger_*) */
  registry?: Registry
}

const consumerGroup = 'ledger-writers'
const pageSize = 1000
/** Consumers that hold nothing and were last seen this long ago are removed from the group (they are gateways that are gone). */
const staleConsumerMs = 24 * 60 * 60 * 1000
const consumerCleanupEveryMs = 10 * 60 * 1000

/** A create's stream entry: one field `c`, a JSON array (compact, read by nothing but decode()). */
export function encodeCreate (event: LedgerCreate): string {
  return JSON.stringify([event.tenantId, event.upstreamTaskId, event.taskId, event.endUser, event.model, event.videoSeconds, event.creditsMilli, event.createdAt])
}

/** A finish's stream entry: field `f` (this JSON array), and field `s`, the settled credits the finish script read ('' : unknown). */
export function encodeFinish (event: Omit<LedgerFinish, 'kind' | 'settledCreditsMilli'>): string {
  return JSON.stringify([event.tenantId, event.upstreamTaskId, event.outcome, event.finishedAt])
}

function decode (fields: string[]): LedgerEvent | null {
  const value = (name: string): string | undefined => {
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
    return undefined
  }
  try {
    const create = value('c')
    if (create !== undefined) {
      const [tenantId, upstreamTaskId, taskId, endUser, model, videoSeconds, creditsMilli, createdAt] = JSON.parse(create) as unknown[]
      if (typeof tenantId !== 'string' || typeof upstreamTaskId !== 'string' || typeof taskId !== 'string' || typeof model !== 'string' ||
        typeof videoSeconds !== 'number' || typeof creditsMilli !== 'number' || typeof createdAt !== 'number' || (endUser !== null && typeof endUser !== 'string')) return null
      return { kind: 'create', tenantId, upstreamTaskId, taskId, endUser, model, videoSeconds, creditsMilli, createdAt }
    }
    const finish = value('f')
    if (finish !== undefined) {
      const [tenantId, upstreamTaskId, outcome, finishedAt] = JSON.parse(finish) as unknown[]
      if (typeof tenantId !== 'string' || typeof upstreamTaskId !== 'string' || (outcome !== 'completed' && outcome !== 'failed') || typeof finishedAt !== 'number') return null
      const settled = value('s')
      return { kind: 'finish', tenantId, upstreamTaskId, outcome, settledCreditsMilli: settled === undefined || settled === '' ? null : Number(settled), finishedAt }
    }
  } catch {}
  return null
}

interface PendingRow {
  upstreamTaskId: string
  tenantId: string
  taskId: string | null
  endUser: string | null
  model: string | null
  videoSeconds: number | null
  creditsEstimated: string | null
  creditsSettled: string | null
  status: 'created' | TaskOutcome
  createdAt: Date | null
  finishedAt: Date | null
}

/**
 * One row per task of the batch (an upsert may not touch a row twice): a create and
 * an end of the same task, read together, become one row; a repeat changes nothing.
 */
function mergeRows (events: readonly LedgerEvent[]): PendingRow[] {
  const rows = new Map<string, PendingRow>()
  for (const event of events) {
    let row = rows.get(event.upstreamTaskId)
    if (row === undefined) {
      row = { upstreamTaskId: event.upstreamTaskId, tenantId: event.tenantId, taskId: null, endUser: null, model: null, videoSeconds: null, creditsEstimated: null, creditsSettled: null, status: 'created', createdAt: null, finishedAt: null }
      rows.set(event.upstreamTaskId, row)
    }
    if (event.kind === 'create') {
      if (row.createdAt !== null) continue
      row.taskId = event.taskId
      row.endUser = event.endUser
      row.model = event.model
      row.videoSeconds = event.videoSeconds
      row.creditsEstimated = String(fromMilli(event.creditsMilli))
      row.createdAt = new Date(event.createdAt)
    } else {
      if (row.finishedAt !== null) continue
      row.status = event.outcome
      row.creditsSettled = event.settledCreditsMilli === null ? null : String(fromMilli(event.settledCreditsMilli))
      row.finishedAt = new Date(event.finishedAt)
    }
  }
  return [...rows.values()]
}

/**
 * Order-free and idempotent: what a row has is never overwritten (a create's fields are
 * set by the first event that knows them, a task's end by the first end), so entries
 * written twice, or an end before its create, give the same row.
 */
const upsertSql = `
INSERT INTO usage_ledger AS l (upstream_task_id, tenant_id, task_id, end_user, model, video_seconds, credits_estimated, credits_settled, status, created_at, finished_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::numeric[], $8::numeric[], $9::text[], $10::timestamptz[], $11::timestamptz[])
ON CONFLICT (upstream_task_id) DO UPDATE SET
  task_id = COALESCE(l.task_id, EXCLUDED.task_id),
  end_user = COALESCE(l.end_user, EXCLUDED.end_user),
  model = COALESCE(l.model, EXCLUDED.model),
  video_seconds = COALESCE(l.video_seconds, EXCLUDED.video_seconds),
  credits_estimated = COALESCE(l.credits_estimated, EXCLUDED.credits_estimated),
  created_at = COALESCE(l.created_at, EXCLUDED.created_at),
  status = CASE WHEN l.finished_at IS NULL THEN EXCLUDED.status ELSE l.status END,
  credits_settled = CASE WHEN l.finished_at IS NULL THEN EXCLUDED.credits_settled ELSE l.credits_settled END,
  finished_at = COALESCE(l.finished_at, EXCLUDED.finished_at)`

const isoUtc = (column: string): string => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

type StreamEntries = Array<[id: string, fields: string[]]>

export function createUsageLedger (options: UsageLedgerOptions): UsageLedger {
  const { database, redis, streamKey, log } = options
  const batchSize = options.batchSize ?? 500
  const maxBuffered = options.maxBuffered ?? 100_000
  const consumer = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  let buffer: LedgerEvent[] = []
  let groupReady = false
  let lastConsumerCleanup = 0
  let running: Promise<void> = Promise.resolve()
  let timer: NodeJS.Timeout | null = null
  let closed = false
  let failing = false
  let dropped = 0
  const registers = options.registry === undefined ? [] : [options.registry]
  const writtenTotal = new Counter({ name: 'vg_usage_ledger_entries_written_total', help: 'Usage-ledger entries (creates and task ends) written to PostgreSQL.', registers })
  const failuresTotal = new Counter({ name: 'vg_usage_ledger_write_failures_total', help: 'Usage-ledger batches that could not be written (kept, retried every LEDGER_FLUSH_MS).', registers })
  const droppedTotal = new Counter({ name: 'vg_usage_ledger_dropped_total', help: 'Usage-ledger entries dropped because 100,000 already waited in memory (no Redis, PostgreSQL away).', registers })
  new Gauge({ // eslint-disable-line no-new
    name: 'vg_usage_ledger_waiting_entries',
    help: 'Usage-ledger entries not yet in PostgreSQL: in this instance\'s memory, plus (with Redis) the stream shared by every instance.',
    registers,
    async collect () {
      const streamed = redis === null ? 0 : await redis.xlen(streamKey).catch(() => 0)
      this.set(buffer.length + streamed)
    }
  })

  async function write (events: readonly LedgerEvent[]): Promise<void> {
    const rows = mergeRows(events)
    if (rows.length === 0) return
    const column = <K extends keyof PendingRow>(name: K): Array<PendingRow[K]> => rows.map((row) => row[name])
    try {
      await database.pool.query(upsertSql, [
        column('upstreamTaskId'), column('tenantId'), column('taskId'), column('endUser'), column('model'), column('videoSeconds'),
        column('creditsEstimated'), column('creditsSettled'), column('status'), column('createdAt'), column('finishedAt')
      ])
    } catch (error) {
      database.failed(error)
      failuresTotal.inc()
      throw error
    }
    database.recovered()
    writtenTotal.inc(events.length)
  }

  async function writeBuffered (): Promise<void> {
    while (buffer.length > 0) {
      const batch = buffer.slice(0, batchSize)
      await write(batch) // on failure the batch stays at the head of the buffer
      buffer = buffer.slice(batch.length)
    }
  }

  /** Writes the entries, then acknowledges and deletes them: only entries that are in PostgreSQL leave the stream. */
  async function settleEntries (client: Redis, entries: StreamEntries): Promise<void> {
    const events: LedgerEvent[] = []
    for (const [id, fields] of entries) {
      const event = decode(fields)
      if (event === null) log.error({ entryId: id }, 'usage ledger: a stream entry could not be read; it is dropped')
      else events.push(event)
    }
    await write(events)
    const ids = entries.map(([id]) => id)
    await client.multi().xack(streamKey, consumerGroup, ...ids).xdel(streamKey, ...ids).exec()
  }

  async function ensureGroup (client: Redis): Promise<void> {
    if (groupReady) return
    try {
      // From the stream's start: entries added before the group existed are written too.
      await client.xgroup('CREATE', streamKey, consumerGroup, '0', 'MKSTREAM')
    } catch (error) {
      if (!String((error as Error).message).startsWith('BUSYGROUP')) throw error
    }
    groupReady = true
  }

  async function readGroup (client: Redis, id: '0' | '>'): Promise<StreamEntries> {
    try {
      const answer = await client.xreadgroup('GROUP', consumerGroup, consumer, 'COUNT', batchSize, 'STREAMS', streamKey, id) as Array<[string, StreamEntries]> | null
      return answer?.[0]?.[1] ?? []
    } catch (error) {
      // The stream (and its group) was deleted: made again on the next cycle.
      if (String((error as Error).message).startsWith('NOGROUP')) groupReady = false
      throw error
    }
  }

  async function drainStream (client: Redis): Promise<void> {
    await ensureGroup(client)
    // This gateway's own pending entries first: a batch whose write failed earlier.
    for (;;) {
      const entries = await readGroup(client, '0')
      if (entries.length === 0) break
      await settleEntries(client, entries)
    }
    // Entries a gateway read and never acknowledged (it was killed): taken over once idle long enough.
    let cursor = '0-0'
    do {
      const [next, entries] = await client.xautoclaim(streamKey, consumerGroup, consumer, options.claimIdleMs, cursor, 'COUNT', batchSize) as [string, StreamEntries, string[]?]
      const live = entries.filter((entry) => entry !== null && Array.isArray(entry[1]))
      if (live.length > 0) {
        log.info({ entries: live.length }, 'usage ledger: took over stream entries a gateway read and never wrote (it stopped)')
        await settleEntries(client, live)
      }
      cursor = next
    } while (cursor !== '0-0')
    // Then the new ones.
    for (;;) {
      const entries = await readGroup(client, '>')
      if (entries.length > 0) await settleEntries(client, entries)
      if (entries.length < batchSize) break
    }
    if (Date.now() - lastConsumerCleanup > consumerCleanupEveryMs) {
      lastConsumerCleanup = Date.now()
      await removeStaleConsumers(client)
    }
  }

  /** Each gateway process is a consumer of its own name: the gone ones, holding nothing, are removed. */
  async function removeStaleConsumers (client: Redis): Promise<void> {
    const consumers = await client.xinfo('CONSUMERS', streamKey, consumerGroup) as unknown[][]
    for (const fields of consumers) {
      const info: Record<string, unknown> = {}
      for (let i = 0; i + 1 < fields.length; i += 2) info[String(fields[i])] = fields[i + 1]
      if (info.name !== consumer && Number(info.pending) === 0 && Number(info.idle) > staleConsumerMs) {
        await client.xgroup('DELCONSUMER', streamKey, consumerGroup, String(info.name))
      }
    }
  }

  async function cycle (): Promise<void> {
    await writeBuffered()
    if (redis !== null) await drainStream(redis)
  }

  /** One cycle at a time: a flush() waits for the running one, then runs its own. */
  function runCycle (): Promise<void> {
    const next = running.then(cycle)
    running = next.catch(() => {})
    return next
  }

  function schedule (): void {
    if (closed) return
    timer = setTimeout(() => {
      timer = null
      runCycle().then(() => {
        if (failing) log.info('usage ledger: writing again')
        failing = false
      }, (error: unknown) => {
        // Nothing is lost: the entries stay in the stream (or the buffer) for the next cycle.
        if (!failing) log.warn({ err: error }, 'usage ledger: writing failed; retrying every LEDGER_FLUSH_MS')
        else log.debug({ err: error }, 'usage ledger: writing failed again')
        failing = true
      }).finally(schedule)
    }, options.flushMs)
    timer.unref()
  }
  schedule()

  const range = (query: LedgerQuery): [Date, Date, string | null] =>
    [new Date(query.fromMs), new Date(query.toMs + msPerDay), query.endUser]

  async function query<T extends object> (sql: string, values: unknown[]): Promise<T[]> {
    try {
      const result = await database.pool.query<T>(sql, values)
      database.recovered()
      return result.rows
    } catch (error) {
      database.failed(error)
      throw error
    }
  }

  return {
    stream: redis === null ? null : streamKey,
    append (event) {
      if (buffer.length >= maxBuffered) {
        dropped += 1
        droppedTotal.inc()
        // Only while PostgreSQL has been away long enough to fill the buffer: said at error level, with the count.
        log.error({ dropped, tenant: event.tenantId, upstreamTaskId: event.upstreamTaskId }, `usage ledger: ${maxBuffered} entries are already waiting to be written; this one is dropped`)
        return
      }
      buffer.push(event)
    },
    flush: runCycle,
    async report (period) {
      const [from, to, endUser] = range(period)
      const days = new Map<string, LedgerDay>()
      const dayOf = (date: string): LedgerDay => {
        let day = days.get(date)
        if (day === undefined) {
          day = { tasksCreated: 0, tasksCompleted: 0, tasksFailed: 0, videoSeconds: 0, creditsMilli: 0 }
          days.set(date, day)
        }
        return day
      }
      const userFilter = 'AND ($4::text IS NULL OR end_user = $4::text)'
      const created = await query<{ day: string, created: number, video_seconds: string, credits_milli: string }>(`
        SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*)::int AS created,
          COALESCE(sum(video_seconds), 0)::text AS video_seconds,
          COALESCE(sum(COALESCE(credits_settled, credits_estimated, 0) * 1000), 0)::bigint::text AS credits_milli
        FROM usage_ledger WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 ${userFilter} GROUP BY 1`, [period.tenantId, from, to, endUser])
      for (const row of created) {
        const day = dayOf(row.day)
        day.tasksCreated = row.created
        day.videoSeconds = Number(row.video_seconds)
        day.creditsMilli = Number(row.credits_milli)
      }
      const finished = await query<{ day: string, completed: number, failed: number }>(`
        SELECT to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
          count(*) FILTER (WHERE status = 'completed')::int AS completed, count(*) FILTER (WHERE status = 'failed')::int AS failed
        FROM usage_ledger WHERE tenant_id = $1 AND finished_at >= $2 AND finished_at < $3 ${userFilter} GROUP BY 1`, [period.tenantId, from, to, endUser])
      for (const row of finished) {
        const day = dayOf(row.day)
        day.tasksCompleted = row.completed
        day.tasksFailed = row.failed
      }
      return days
    },
    async * rows (period) {
      const [from, to, endUser] = range(period)
      // Keyset pages: a year of rows never sits in memory at once, and no cursor holds a connection.
      let after: { createdAt: string, upstreamTaskId: string } | null = null
      for (;;) {
        const page = await query<LedgerRow & { cursor: string }>(`
          SELECT task_id AS "taskId", upstream_task_id AS "upstreamTaskId", tenant_id AS "tenantId", end_user AS "endUser", model,
            video_seconds AS "videoSeconds", credits_estimated::text AS "creditsEstimated", credits_settled::text AS "creditsSettled", status,
            ${isoUtc('created_at')} AS "createdAt", ${isoUtc('finished_at')} AS "finishedAt", created_at::text AS cursor
          FROM usage_ledger
          WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND ($4::text IS NULL OR end_user = $4::text)
            AND ($5::timestamptz IS NULL OR (created_at, upstream_task_id) > ($5::timestamptz, $6::text))
          ORDER BY created_at, upstream_task_id LIMIT ${pageSize}`, [period.tenantId, from, to, endUser, after?.createdAt ?? null, after?.upstreamTaskId ?? null])
        if (page.length === 0) return
        const last = page[page.length - 1] as LedgerRow & { cursor: string }
        after = { createdAt: last.cursor, upstreamTaskId: last.upstreamTaskId }
        yield page.map(({ cursor: _cursor, ...row }) => row)
        if (page.length < pageSize) return
      }
    },
    async close () {
      closed = true
      if (timer !== null) clearTimeout(timer)
      try {
        await runCycle()
      } catch (error) {
        const waiting = buffer.length
        buffer = []
        // With Redis, what was not written stays in the stream for the next gateway; only memory entries are lost.
        throw new Error(`usage ledger: the last write failed (${(error as Error).message}); ${waiting} entries held in memory are lost${redis === null ? '' : ', the stream\'s stay in Redis'}`, { cause: error })
      }
    }
  }
}
