import t from 'tap'
import pg from 'pg'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { postgresForTests } from '../../helpers/postgres.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { runMigrations } from '../../../src/features/database/migrate.ts'

const silent = { info () {}, warn () {}, error () {} }
const zero = { requests: 0, tasks_created: 0, tasks_completed: 0, tasks_failed: 0, video_seconds: 0, credits: 0, archived_videos: 0, archived_bytes: 0 }

async function mint (app: FastifyInstance, tenant: TestTenant, body: Record<string, unknown>): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/v1/tokens', headers: { authorization: tenant.authorization }, payload: body })
  if (response.statusCode !== 200) throw new Error(`mint failed: ${response.body}`)
  return response.json<{ token: string }>().token
}

interface LedgerRowInDb {
  upstream_task_id: string
  tenant_id: string
  task_id: string | null
  end_user: string | null
  model: string | null
  video_seconds: number | null
  credits_estimated: string | null
  credits_settled: string | null
  status: string
  created_at: string | null
  finished_at: string | null
}

async function ledgerRows (url: string): Promise<LedgerRowInDb[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<LedgerRowInDb>(`SELECT upstream_task_id, tenant_id, task_id, end_user, model, video_seconds, credits_estimated::text, credits_settled::text, status,
      to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created_at, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS finished_at
      FROM usage_ledger ORDER BY created_at, upstream_task_id`)
    return rows
  } finally {
    await client.end()
  }
}

for (const mode of ['memory', 'redis'] as const) {
  t.test(`database mode, ${mode} store: one ledger row per task created, settled in place; /v1/usage from it; format=csv`, async (t) => {
    const database = await postgresForTests()
    if ('skip' in database) { t.comment(database.skip); return }
    t.teardown(database.cleanup)
    let redisConfig = {}
    if (mode === 'redis') {
      const redis = await redisForTests()
      if ('skip' in redis) { t.comment(redis.skip); return }
      redisConfig = { redisUrl: redis.url, redisKeyPrefix: `test-ledger-${process.pid}-${Date.now()}:` }
    }
    await runMigrations({ databaseUrl: database.url, log: silent })

    let clock = Date.UTC(2026, 5, 15, 12, 0, 0)
    const now = (): number => clock
    const upstream = await startTestSimulator(t, { taskDurationMs: 100_000, now })
    const acme = makeTenant('acme')
    const globex = makeTenant('globex')
    // A long flush interval: whatever the assertions see was written by the report's (or the test's) own flush.
    const config = { ...redisConfig, ledgerFlushMs: 60_000 }
    const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex], seams: { clock: now }, config: { ...config, databaseUrl: database.url } })
    const post = (authorization: string, payload: Record<string, unknown>) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization }, payload })
    const get = (url: string, tenant: TestTenant = acme) => app.inject({ method: 'GET', url, headers: { authorization: tenant.authorization } })

    const alice = await mint(app, acme, { end_user: 'alice' })
    const completes = await post(acme.authorization, { ...validBody, n: 2, duration: 8, quality: '1080p' })
    t.equal(completes.statusCode, 200)
    const completesId = completes.json<{ id: string }>().id
    const fails = await post(`Bearer ${alice}`, { ...validBody, prompt: 'A storm [fail:service_error]' })
    t.equal(fails.statusCode, 200)
    const failsId = fails.json<{ id: string }>().id
    // The upstream refuses this create: admitted, then released; no task, so no row (and no charge in the counters either).
    upstream.simulator.faults.push({ route: 'create', status: 400, times: 1 })
    t.equal((await post(acme.authorization, validBody)).statusCode, 400)
    // Refused by the gateway's own validation: never admitted.
    t.equal((await post(acme.authorization, { ...validBody, n: 9 })).statusCode, 400)

    await app.usageLedger?.flush()
    const upstreamOf = (id: string): string => app.taskIds.unscope(acme.id, id) as string
    const createdRow = (id: string, fields: Partial<LedgerRowInDb>): LedgerRowInDb => ({
      upstream_task_id: upstreamOf(id),
      tenant_id: acme.id,
      task_id: id,
      end_user: null,
      model: 'veo-3.1-fast-generate-preview',
      video_seconds: 4,
      credits_estimated: '9.600',
      credits_settled: null,
      status: 'created',
      created_at: '2026-06-15T12:00:00.000Z',
      finished_at: null,
      ...fields
    })
    const byCreated = (rows: LedgerRowInDb[]): LedgerRowInDb[] => rows.sort((a, b) => a.upstream_task_id < b.upstream_task_id ? -1 : 1)
    t.same(await ledgerRows(database.url), byCreated([
      createdRow(completesId, { video_seconds: 16, credits_estimated: '48.000' }),
      createdRow(failsId, { end_user: 'alice' })
    ]), 'a row per create answered 200, written off the request path; the refused creates have none')

    // Next day: both seen finished.
    clock += 12 * 3_600_000
    t.equal((await get(`/v1/tasks/${completesId}`)).json().status, 'completed')
    t.equal((await get(`/v1/tasks/${failsId}`)).json().status, 'failed')
    t.equal((await get(`/v1/tasks/${failsId}`)).json().status, 'failed', 'read twice: settled once')
    await app.usageLedger?.flush()
    const settled = byCreated([
      createdRow(completesId, { video_seconds: 16, credits_estimated: '48.000', credits_settled: '48.000', status: 'completed', finished_at: '2026-06-16T00:00:00.000Z' }),
      createdRow(failsId, { end_user: 'alice', credits_settled: '9.600', status: 'failed', finished_at: '2026-06-16T00:00:00.000Z' })
    ])
    t.same(await ledgerRows(database.url), settled, 'settled and finished in place')
    const metric = async (name: string): Promise<string> => await app.metrics.registry.getSingleMetricAsString(name)
    t.match(await metric('vg_usage_ledger_entries_written_total'), /^vg_usage_ledger_entries_written_total 4$/m, 'two creates, two ends')
    t.match(await metric('vg_usage_ledger_waiting_entries'), /^vg_usage_ledger_waiting_entries 0$/m)
    t.match(await metric('vg_usage_ledger_write_failures_total'), /^vg_usage_ledger_write_failures_total 0$/m)

    // Counted in the counters too (requests: the mint, 4 creates, this day's 3 reads, then each report itself).
    const expected = {
      object: 'usage',
      tenant: acme.id,
      from: '2026-06-14',
      to: '2026-06-16',
      data: [
        { date: '2026-06-14', ...zero },
        { date: '2026-06-15', ...zero, requests: 5, tasks_created: 2, video_seconds: 20, credits: 57.6 },
        { date: '2026-06-16', ...zero, requests: 4, tasks_completed: 1, tasks_failed: 1 }
      ],
      total: { ...zero, requests: 9, tasks_created: 2, tasks_completed: 1, tasks_failed: 1, video_seconds: 20, credits: 57.6 }
    }
    const fromLedger = await get('/v1/usage?from=2026-06-14&to=2026-06-16')
    t.equal(fromLedger.statusCode, 200)
    t.same(fromLedger.json(), expected, 'the ledger\'s answer')
    const aliceExpected = {
      object: 'usage',
      tenant: acme.id,
      end_user: 'alice',
      from: '2026-06-15',
      to: '2026-06-16',
      data: [{ date: '2026-06-15', ...zero, requests: 1, tasks_created: 1, video_seconds: 4, credits: 9.6 }, { date: '2026-06-16', ...zero, tasks_failed: 1 }],
      total: { ...zero, requests: 1, tasks_created: 1, tasks_failed: 1, video_seconds: 4, credits: 9.6 }
    }
    t.same((await get('/v1/usage?from=2026-06-15&to=2026-06-16&end_user=alice')).json(), aliceExpected, 'an end user\'s part, from the ledger')
    t.same((await get('/v1/usage?from=2026-06-15&to=2026-06-16', globex)).json().total, { ...zero, requests: 1 }, 'no tenant sees another\'s rows')

    if (mode === 'redis') {
      // The counters' own answer: a file-mode gateway on the same Redis reads them alone.
      const counters = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex], seams: { clock: now }, config })
      const countersAnswer = (await counters.inject({ method: 'GET', url: '/v1/usage?from=2026-06-14&to=2026-06-16', headers: { authorization: acme.authorization } })).json()
      const ledgerAnswer = (await get('/v1/usage?from=2026-06-14&to=2026-06-16')).json()
      // Requests are counters in both modes (each report counts itself): everything else must match.
      const withoutRequests = (report: { data: Array<Record<string, unknown>>, total: Record<string, unknown> }) => ({
        ...report, data: report.data.map(({ requests: _requests, ...day }) => day), total: { ...report.total, requests: undefined }
      })
      t.same(withoutRequests(ledgerAnswer), withoutRequests(countersAnswer), 'the ledger\'s answer is the counters\' answer')
      t.same(withoutRequests(countersAnswer), withoutRequests(expected))
      t.equal(ledgerAnswer.total.requests, countersAnswer.total.requests + 1, 'requests: the counters\', in both')
      const stream = `${(redisConfig as { redisKeyPrefix: string }).redisKeyPrefix}ledger`
      t.equal(await app.redis?.xlen(stream), 0, 'written entries leave the stream')
    }

    t.test('format=csv: the rows of the period, whole', async (t) => {
      const response = await get('/v1/usage?from=2026-06-15&to=2026-06-15&format=csv')
      t.equal(response.statusCode, 200)
      t.equal(response.headers['content-type'], 'text/csv; charset=utf-8')
      t.equal(response.headers['content-disposition'], `attachment; filename="usage-${acme.id}-2026-06-15-2026-06-15.csv"`)
      t.equal(response.headers['cache-control'], 'private, no-store')
      const line = (row: LedgerRowInDb): string => [row.task_id, row.upstream_task_id, row.tenant_id, row.end_user ?? '', row.model, row.video_seconds, row.credits_estimated, row.credits_settled, row.status, row.created_at, row.finished_at].join(',') + '\r\n'
      t.equal(response.body, 'task_id,upstream_task_id,tenant,end_user,model,video_seconds,credits_estimated,credits_settled,status,created_at,finished_at\r\n' + settled.map(line).join(''))
      t.equal((await get('/v1/usage?from=2026-06-16&to=2026-06-16&format=csv')).body, 'task_id,upstream_task_id,tenant,end_user,model,video_seconds,credits_estimated,credits_settled,status,created_at,finished_at\r\n', 'by the day of the create: none on the 16th')
      t.equal((await get('/v1/usage?from=2026-06-15&to=2026-06-15&format=csv&end_user=alice')).body.split('\r\n').length, 3, 'one end user\'s: the header and one row')
      t.equal((await get('/v1/usage?from=2026-06-15&to=2026-06-15&format=json')).json().total.tasks_created, 2, 'format=json is the default\'s answer')
    })

    t.test('a bad format is a 400 in the error format', async (t) => {
      assertErrorResponse(t, await get('/v1/usage?format=xlsx'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: '"format" must be one of: "json", "csv".', param: 'format' })
    })
  })
}

t.test('file mode: format=csv is refused, naming database mode', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  t.equal(app.usageLedger, null)
  assertErrorResponse(t, await app.inject({ method: 'GET', url: '/v1/usage?format=csv', headers: { authorization: acme.authorization } }), {
    status: 400,
    code: 'invalid_request',
    type: 'invalid_request_error',
    message: '"format=csv" lists the usage ledger\'s rows, which exist in database mode only (DATABASE_URL); this gateway keeps counters only (format=json).',
    param: 'format'
  })
})

t.test('database mode without Redis: a graceful close writes what waits in memory', async (t) => {
  const database = await postgresForTests()
  if ('skip' in database) { t.comment(database.skip); return }
  t.teardown(database.cleanup)
  await runMigrations({ databaseUrl: database.url, log: silent })
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { databaseUrl: database.url, ledgerFlushMs: 60_000 } })
  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })
  t.equal(created.statusCode, 200)
  t.same(await ledgerRows(database.url), [], 'not yet written: LEDGER_FLUSH_MS has not passed')
  await app.close()
  t.same((await ledgerRows(database.url)).map((row) => row.task_id), [created.json<{ id: string }>().id], 'written by the close')
})
