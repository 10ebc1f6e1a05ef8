import t, { type Test } from 'tap'
import pg from 'pg'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { setTimeout as sleep } from 'node:timers/promises'
import { postgresForTests } from '../../helpers/postgres.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { runMigrations } from '../../../src/features/database/migrate.ts'
import { createUsageLedger, encodeCreate, encodeFinish, type LedgerCreate } from '../../../src/features/usage/ledger.ts'
import type { Database } from '../../../src/features/database/plugin.ts'

const silent = { info () {}, warn () {}, error () {} }
const log = pino({ level: 'silent' })

function databaseOf (pool: pg.Pool): Database & { failures: number } {
  const database = {
    pool,
    failures: 0,
    health: () => 'ok' as const,
    failed () { database.failures += 1 },
    recovered () {}
  }
  return database
}

async function freshDatabase (t: Test): Promise<{ url: string, pool: pg.Pool } | null> {
  const database = await postgresForTests()
  if ('skip' in database) { t.comment(database.skip); return null }
  t.teardown(database.cleanup)
  await runMigrations({ databaseUrl: database.url, log: silent })
  const pool = new pg.Pool({ connectionString: database.url, max: 2 })
  // node-postgres: an idle client's error surfaces on its pool; without a listener it is uncaught.
  pool.on('error', () => {})
  t.teardown(async () => { await pool.end() })
  return { url: database.url, pool }
}

const rowsOf = async (pool: pg.Pool): Promise<unknown[]> => (await pool.query(`SELECT upstream_task_id, tenant_id, task_id, end_user, model, video_seconds, credits_estimated::text, credits_settled::text, status,
  extract(epoch FROM created_at)::bigint * 1000 AS created_at, extract(epoch FROM finished_at)::bigint * 1000 AS finished_at FROM usage_ledger ORDER BY upstream_task_id`)).rows

const create = (upstreamTaskId: string, fields: Partial<LedgerCreate> = {}): LedgerCreate => ({
  kind: 'create', tenantId: 'acme', upstreamTaskId, taskId: `${upstreamTaskId}.tag`, endUser: null, model: 'veo-3.1-fast-generate-preview', videoSeconds: 8, creditsMilli: 19_200, createdAt: Date.UTC(2026, 5, 15, 12), ...fields
})
const row = (upstreamTaskId: string, fields: Record<string, unknown> = {}): Record<string, unknown> => ({
  upstream_task_id: upstreamTaskId,
  tenant_id: 'acme',
  task_id: `${upstreamTaskId}.tag`,
  end_user: null,
  model: 'veo-3.1-fast-generate-preview',
  video_seconds: 8,
  credits_estimated: '19.200',
  credits_settled: null,
  status: 'created',
  created_at: String(Date.UTC(2026, 5, 15, 12)),
  finished_at: null,
  ...fields
})

t.test('the upsert is order-free and idempotent: an end before its create, repeats, in one batch or several', async (t) => {
  const database = await freshDatabase(t)
  if (database === null) return
  const ledger = createUsageLedger({ database: databaseOf(database.pool), redis: null, streamKey: 'unused', flushMs: 60_000, claimIdleMs: 60_000, log })
  t.teardown(() => ledger.close())
  const finishedAt = Date.UTC(2026, 5, 16)
  // task-1: its end is written first, its create in a later batch (a create claimed from a gateway that died).
  ledger.append({ kind: 'finish', tenantId: 'acme', upstreamTaskId: 'task-1', outcome: 'completed', settledCreditsMilli: 18_000, finishedAt })
  // task-2: create, end and repeats of both in one batch.
  ledger.append(create('task-2'))
  ledger.append({ kind: 'finish', tenantId: 'acme', upstreamTaskId: 'task-2', outcome: 'failed', settledCreditsMilli: null, finishedAt })
  ledger.append(create('task-2', { creditsMilli: 1 }))
  ledger.append({ kind: 'finish', tenantId: 'acme', upstreamTaskId: 'task-2', outcome: 'completed', settledCreditsMilli: 5, finishedAt: finishedAt + 1000 })
  await ledger.flush()
  t.same(await rowsOf(database.pool), [
    { ...row('task-1'), task_id: null, model: null, video_seconds: null, credits_estimated: null, created_at: null, credits_settled: '18.000', status: 'completed', finished_at: String(finishedAt) },
    { ...row('task-2'), status: 'failed', finished_at: String(finishedAt) }
  ])
  ledger.append(create('task-1', { endUser: 'alice' }))
  ledger.append({ kind: 'finish', tenantId: 'acme', upstreamTaskId: 'task-1', outcome: 'failed', settledCreditsMilli: 1, finishedAt: finishedAt + 5000 })
  ledger.append(create('task-2', { model: 'other', videoSeconds: 99 }))
  await ledger.flush()
  t.same(await rowsOf(database.pool), [
    { ...row('task-1'), end_user: 'alice', credits_settled: '18.000', status: 'completed', finished_at: String(finishedAt) },
    { ...row('task-2'), status: 'failed', finished_at: String(finishedAt) }
  ], 'the late create fills its row; nothing already written changes')
})

t.test('without Redis: entries wait in memory through a database failure, and are written once it answers', async (t) => {
  const database = await freshDatabase(t)
  if (database === null) return
  // A pool whose queries fail like a database that is down.
  const broken = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/none', connectionTimeoutMillis: 500 })
  broken.on('error', () => {})
  t.teardown(async () => { await broken.end() })
  const failing = databaseOf(broken)
  const ledger = createUsageLedger({ database: failing, redis: null, streamKey: 'unused', flushMs: 60_000, claimIdleMs: 60_000, log })
  ledger.append(create('task-1'))
  await t.rejects(ledger.flush(), /ECONNREFUSED/)
  t.equal(failing.failures, 1, 'the database plugin hears of the failure (/readyz: database degraded)')
  // The same entries, the database back: swap the pool the way a reconnect would.
  failing.pool = database.pool
  await ledger.flush()
  t.same(await rowsOf(database.pool), [row('task-1')])
  await ledger.close()
})

t.test('with Redis: entries a gateway read and never wrote (it died) are taken over; nothing leaves the stream before it is written', async (t) => {
  const database = await freshDatabase(t)
  if (database === null) return
  const found = await redisForTests()
  if ('skip' in found) { t.comment(found.skip); return }
  const redis = new Redis(found.url)
  t.teardown(() => redis.quit())
  const streamKey = `test-ledger-writer-${process.pid}-${Date.now()}:ledger`
  t.teardown(() => redis.del(streamKey))

  // A writer whose database is down reads two entries and cannot write them.
  const broken = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/none', connectionTimeoutMillis: 500 })
  broken.on('error', () => {})
  t.teardown(async () => { await broken.end() })
  const doomed = createUsageLedger({ database: databaseOf(broken), redis, streamKey, flushMs: 60_000, claimIdleMs: 60_000, log })
  await redis.xadd(streamKey, '*', 'c', encodeCreate(create('task-1')))
  await redis.xadd(streamKey, '*', 'c', encodeCreate(create('task-2')))
  await redis.xadd(streamKey, '*', 'f', encodeFinish({ tenantId: 'acme', upstreamTaskId: 'task-1', outcome: 'completed', finishedAt: Date.UTC(2026, 5, 16) }), 's', '19200')
  await t.rejects(doomed.flush(), /ECONNREFUSED/)
  t.equal(await redis.xlen(streamKey), 3, 'nothing was acknowledged or deleted')
  const pending = await redis.xpending(streamKey, 'ledger-writers') as [number, ...unknown[]]
  t.equal(pending[0], 3, 'the three are pending under the writer that read them')
  // It "dies" here (never closed: a SIGKILL runs no close).

  const live = createUsageLedger({ database: databaseOf(database.pool), redis, streamKey, flushMs: 60_000, claimIdleMs: 200, log })
  t.teardown(() => live.close())
  await live.flush()
  t.same(await rowsOf(database.pool), [], 'not yet idle long enough: not taken over')
  t.equal(await redis.xlen(streamKey), 3)
  await sleep(300)
  await live.flush()
  t.same(await rowsOf(database.pool), [
    row('task-1', { credits_settled: '19.200', status: 'completed', finished_at: String(Date.UTC(2026, 5, 16)) }),
    row('task-2')
  ])
  t.equal(await redis.xlen(streamKey), 0, 'written, then acknowledged and deleted')
  t.equal((await redis.xpending(streamKey, 'ledger-writers') as [number])[0], 0)
})
