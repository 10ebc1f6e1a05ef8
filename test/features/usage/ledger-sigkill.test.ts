import t from 'tap'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { Redis } from 'ioredis'
import { freePort, startServerProcess, type ServerProcess } from '../../helpers/server-process.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { postgresForTests } from '../../helpers/postgres.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { testGatewaySecret, validBody } from '../../helpers/gateway.ts'
import { runMigrations } from '../../../src/features/database/migrate.ts'
import { tenantKeyHash } from '../../../src/features/tenants/registry.ts'

const silent = { info () {}, warn () {}, error () {} }

/**
 * Database mode loads its tenants from PostgreSQL (src/features/database/tenant-sync.ts, the
 * tenants/admin work). Until that loader is in the tree a database-mode gateway has no tenant
 * to create for, and this test can only say so; once it is, the test runs, and must pass.
 */
const tenantLoader = fileURLToPath(new URL('../../../src/features/database/tenant-sync.ts', import.meta.url))

t.test('the usage ledger after a SIGKILL mid-load: every create answered 200 has exactly one row once a gateway runs again', async (t) => {
  if (!existsSync(tenantLoader)) {
    const message = 'LEDGER SIGKILL TEST SKIPPED: database mode loads no tenants from PostgreSQL in this tree (no src/features/database/tenant-sync.ts yet)'
    process.stderr.write(`\n!!!!!!!! ${message}\n\n`)
    t.comment(message)
    return
  }
  const database = await postgresForTests()
  if ('skip' in database) { t.comment(database.skip); return }
  t.teardown(database.cleanup)
  const found = await redisForTests()
  if ('skip' in found) { t.comment(found.skip); return }
  await runMigrations({ databaseUrl: database.url, log: silent })

  // The tenant, as database mode keeps it.
  const tenantId = `ledger-kill-${process.pid}`
  const key = `vgk_test_${tenantId}_${Math.random().toString(36).slice(2)}`
  const db = new pg.Client({ connectionString: database.url })
  await db.connect()
  t.teardown(async () => { await db.end() })
  await db.query('INSERT INTO tenants (id, settings) VALUES ($1, $2)', [tenantId, { rateLimit: { max: 1_000_000, timeWindow: 60_000 } }])
  await db.query('INSERT INTO tenant_keys (id, tenant_id, key_hash) VALUES ($1, $2, $3)', [`${tenantId}-key`, tenantId, tenantKeyHash(key)])

  const upstream = await startTestSimulator(t, { taskDurationMs: 3_600_000 })
  const redisKeyPrefix = `test-ledger-kill-${process.pid}-${Date.now()}:`
  const redis = new Redis(found.url)
  t.teardown(async () => {
    const keys = await redis.keys(`${redisKeyPrefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  })
  const start = async (): Promise<{ server: ServerProcess, base: string }> => {
    const port = await freePort()
    const server = startServerProcess(t, {
      PORT: String(port),
      HOST: '127.0.0.1',
      EVOLINK_API_KEY: TEST_UPSTREAM_KEY,
      EVOLINK_BASE_URL: upstream.url,
      GATEWAY_SECRET: testGatewaySecret,
      DATABASE_URL: database.url,
      REDIS_URL: found.url,
      REDIS_KEY_PREFIX: redisKeyPrefix,
      // Written often (the kill lands between reads, writes and acknowledgements), taken over soon.
      LEDGER_FLUSH_MS: '50',
      LEDGER_CLAIM_IDLE_MS: '1000',
      LOG_LEVEL: 'info'
    })
    await server.waitFor(/Server listening/)
    return { server, base: `http://127.0.0.1:${port}` }
  }

  const first = await start()
  const answered: string[] = []
  const load = { stop: false }
  const client = async (): Promise<void> => {
    while (!load.stop) {
      try {
        const response = await fetch(`${first.base}/v1/videos/generations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify(validBody)
        })
        const body = await response.json() as { id?: string }
        if (response.status === 200 && typeof body.id === 'string') answered.push(body.id)
        else if (!load.stop) throw new Error(`create answered ${response.status}: ${JSON.stringify(body)}`)
      } catch (error) {
        // After the kill: refused, or cut mid-answer (such a create may have a row; it was never answered 200).
        if (!load.stop) throw error
      }
    }
  }
  const clients = Array.from({ length: 8 }, client)
  while (answered.length < 200) await sleep(5)
  first.server.child.kill('SIGKILL')
  load.stop = true
  await Promise.allSettled(clients)
  t.equal(await first.server.exited, null, 'killed, not exited')
  const answeredBeforeKill = [...answered]
  t.ok(answeredBeforeKill.length >= 200, `${answeredBeforeKill.length} creates answered 200 before the kill`)

  // What the kill left (not asserted: the split depends on timing; the sum is what matters).
  const writtenBefore = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_ledger WHERE task_id = ANY($1)', [answeredBeforeKill])).rows[0]?.n
  const pendingAtKill = (await redis.xpending(`${redisKeyPrefix}ledger`, 'ledger-writers') as [number])[0]
  t.comment(`at the kill: ${writtenBefore} of ${answeredBeforeKill.length} in PostgreSQL, ${await redis.xlen(`${redisKeyPrefix}ledger`)} entries in the stream, ${pendingAtKill} of them read and not acknowledged`)
  const second = await start()
  const restartedAt = Date.now()
  // The second gateway writes what is left in the stream, and takes over what the first read and never wrote.
  const deadline = Date.now() + 30_000
  let rows: Array<{ task_id: string, n: number }> = []
  while (Date.now() < deadline) {
    rows = (await db.query<{ task_id: string, n: number }>('SELECT task_id, count(*)::int AS n FROM usage_ledger WHERE task_id = ANY($1) GROUP BY task_id', [answeredBeforeKill])).rows
    if (rows.length === answeredBeforeKill.length) break
    await sleep(100)
  }
  t.equal(rows.length, answeredBeforeKill.length, 'every create answered 200 has a row')
  t.same(rows.filter((row) => row.n !== 1), [], 'exactly one each')
  t.comment(`all written ${Date.now() - restartedAt} ms after the restart`)
  const incomplete = await db.query('SELECT task_id FROM usage_ledger WHERE tenant_id = $1 AND (created_at IS NULL OR model IS NULL OR credits_estimated IS NULL OR status <> $2)', [tenantId, 'created'])
  t.same(incomplete.rows, [], 'each row whole')
  // Nothing is left behind in Redis: every entry written, acknowledged and deleted.
  while (Date.now() < deadline && (await redis.xlen(`${redisKeyPrefix}ledger`)) > 0) await sleep(100)
  t.equal(await redis.xlen(`${redisKeyPrefix}ledger`), 0)
  second.server.child.kill('SIGTERM')
  await second.server.exited
})
