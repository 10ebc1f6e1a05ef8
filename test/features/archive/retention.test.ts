import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { request } from 'undici'
import type { Config } from '../../../src/config.ts'
import { sampleVideo } from '../../../src/simulator/media.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { makeTenant, startTestGateway, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'

const dayMs = 86_400_000
const redis = await redisForTests()

interface Answer { statusCode: number, headers: Record<string, unknown>, body: string, bytes: Buffer }

async function send (base: string, tenant: TestTenant, method: 'GET' | 'POST', path: string): Promise<Answer> {
  const answer = await request(base + path, {
    method,
    headers: { authorization: tenant.authorization, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    ...(method === 'POST' ? { body: JSON.stringify(validBody) } : {})
  })
  const bytes = Buffer.from(await answer.body.arrayBuffer())
  return { statusCode: answer.statusCode, headers: answer.headers as Record<string, unknown>, body: bytes.toString('utf8'), bytes }
}

async function filesIn (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1)).sort()
}

/** Creates a task and reads it until its archive leaves `pending` (the read is what queues it). */
async function createAndArchive (base: string, tenant: TestTenant): Promise<{ id: string, task: Record<string, any> }> {
  const id = JSON.parse((await send(base, tenant, 'POST', '/v1/videos/generations')).body).id as string
  for (let i = 0; i < 500; i++) {
    const task = JSON.parse((await send(base, tenant, 'GET', `/v1/tasks/${id}`)).body)
    if (task.archive !== undefined && task.archive.status !== 'pending') return { id, task }
    await sleep(20)
  }
  throw new Error('the archive did not finish')
}

async function deletions (app: FastifyInstance): Promise<Record<string, number>> {
  const metric = await app.metrics.registry.getSingleMetric('vg_archive_deletions_total')?.get()
  return Object.fromEntries((metric?.values ?? []).map((value) => [String(value.labels.reason), value.value]))
}

/** The records in memory, or on the real Redis under a prefix of the test's own. */
async function storeConfig (t: Test, mode: 'memory' | 'redis'): Promise<Partial<Config>> {
  if (mode === 'memory' || 'skip' in redis) return {}
  const keyPrefix = `vg-test:archive-retention:${process.pid}:${randomBytes(6).toString('hex')}:`
  t.teardown(async () => {
    const client = new Redis(redis.url)
    const keys = await client.keys(`${keyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    client.disconnect()
  })
  return { redisUrl: redis.url, redisKeyPrefix: keyPrefix }
}

for (const mode of ['memory', 'redis'] as const) {
  t.test(`${mode}: the sweeper deletes a tenant's videos past their retention, and only those`, { skip: mode === 'redis' && 'skip' in redis ? redis.skip : false }, async (t) => {
    const simulator = await startTestSimulator(t, { taskDurationMs: 0 })
    const dir = await mkdtemp(join(tmpdir(), 'vg-archive-retention-'))
    t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
    const short = makeTenant('short', { archive: { retentionDays: 2 } })
    const long = makeTenant('long', { archive: { retentionDays: 10 } })
    // The gateway's clock, moved by the test: days pass without waiting for them.
    let offset = 0
    const clock = (): number => Date.now() + offset
    const { app, url } = await startTestGateway(t, {
      upstreamUrl: simulator.url,
      upstreamKey: TEST_UPSTREAM_KEY,
      tenants: [short, long],
      config: { archiveDir: dir, archiveAllowedSources: '127.0.0.0/8', archivePollIntervalMs: 20, ...await storeConfig(t, mode) },
      seams: { clock }
    })

    const before = clock()
    const shortTask = await createAndArchive(url, short)
    const longTask = await createAndArchive(url, long)
    const after = clock()
    t.equal(shortTask.task.archive.status, 'archived')
    const retainUntil = shortTask.task.archive.retain_until as number
    t.ok(retainUntil >= Math.floor((before + 2 * dayMs) / 1000) && retainUntil <= Math.ceil((after + 2 * dayMs) / 1000), 'retain_until is two days after the archive')
    t.equal(longTask.task.archive.status, 'archived')
    t.equal((await filesIn(dir)).length, 2)

    // A day later: nothing is due yet.
    offset += dayMs
    await sleep(100)
    t.equal((await filesIn(dir)).length, 2, 'within the retention nothing is deleted')
    t.equal(JSON.parse((await send(url, short, 'GET', `/v1/tasks/${shortTask.id}`)).body).archive.status, 'archived')

    // Past the short tenant's two days, inside the long tenant's ten.
    offset += dayMs + 60_000
    let read: Record<string, any> = {}
    for (let i = 0; i < 500; i++) {
      read = JSON.parse((await send(url, short, 'GET', `/v1/tasks/${shortTask.id}`)).body)
      if (read.archive.status !== 'archived') break
      await sleep(20)
    }
    t.same(read.archive, { status: 'expired' }, 'the task read shows the archive expired')
    t.match(read.results[0], /\/files\//, 'results are the upstream links again')
    t.notOk('upstream_results' in read)
    assertErrorResponse(t, await send(url, short, 'GET', `/v1/tasks/${shortTask.id}/content`), {
      status: 410,
      code: 'content_deleted',
      type: 'invalid_request_error',
      message: 'The archived videos of this task were deleted (at the end of their retention).'
    })
    const left = await filesIn(dir)
    t.equal(left.length, 1, 'one object left')
    t.ok(left[0]?.startsWith(`${long.id}/`), 'the long tenant\'s')
    t.same(await deletions(app), { retention: 1 }, 'one deletion, by retention')

    const kept = await send(url, long, 'GET', `/v1/tasks/${longTask.id}/content`)
    t.equal(kept.statusCode, 200, 'the other tenant\'s video is still served')
    t.same(kept.bytes, sampleVideo)
    t.equal(JSON.parse((await send(url, long, 'GET', `/v1/tasks/${longTask.id}`)).body).archive.status, 'archived')
  })
}
