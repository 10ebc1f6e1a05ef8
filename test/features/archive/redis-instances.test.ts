import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t from 'tap'
import { request } from 'undici'
import type { ArchiveRecord } from '../../../src/features/archive/records.ts'
import { redisKeyMap } from '../../../src/features/store/keys.ts'
import { sampleVideo } from '../../../src/simulator/media.ts'
import { makeTenant, startTestGateway, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false
const sampleSha256 = createHash('sha256').update(sampleVideo).digest('hex')

async function send (base: string, tenant: TestTenant, method: 'GET' | 'POST', path: string): Promise<{ statusCode: number, json: any, bytes: Buffer, headers: Record<string, unknown> }> {
  const answer = await request(base + path, {
    method,
    headers: { authorization: tenant.authorization, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    ...(method === 'POST' ? { body: JSON.stringify(validBody) } : {})
  })
  const bytes = Buffer.from(await answer.body.arrayBuffer())
  const isJson = String(answer.headers['content-type']).startsWith('application/json')
  return { statusCode: answer.statusCode, json: isJson ? JSON.parse(bytes.toString('utf8')) : null, bytes, headers: answer.headers as Record<string, unknown> }
}

/** vg_archive_jobs_total of one instance, by outcome. */
async function jobsByOutcome (app: FastifyInstance): Promise<Record<string, number>> {
  const metric = await app.metrics.registry.getSingleMetric('vg_archive_jobs_total')?.get()
  return Object.fromEntries((metric?.values ?? []).map((value) => [String(value.labels.outcome), value.value]))
}

t.test('two instances on one Redis archive each task exactly once', { skip }, async (t) => {
  if ('skip' in redis) return
  const keyPrefix = `vg-test:archive-instances:${process.pid}:${randomBytes(6).toString('hex')}:`
  const keys = redisKeyMap(keyPrefix)
  const client = new Redis(redis.url)
  t.teardown(async () => {
    const leftover = await client.keys(`${keyPrefix}*`)
    if (leftover.length > 0) await client.del(...leftover)
    client.disconnect()
  })
  const simulator = await startTestSimulator(t, { taskDurationMs: 0 })
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-instances-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const acme = makeTenant('acme')
  const options = {
    upstreamUrl: simulator.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    // One storage for both (as a shared bucket would be), one key prefix: one gateway, two instances.
    config: { redisUrl: redis.url, redisKeyPrefix: keyPrefix, archiveDir: dir, archiveAllowedSources: '127.0.0.0/8', archivePollIntervalMs: 20, archiveConcurrency: 2 }
  }
  const a = await startTestGateway(t, options)
  const b = await startTestGateway(t, options)

  const count = 24
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    const created = await send(i % 2 === 0 ? a.url : b.url, acme, 'POST', '/v1/videos/generations')
    if (created.statusCode !== 200) throw new Error(`create answered ${created.statusCode}`)
    ids.push(created.json.id)
  }
  // Every download takes a while: each instance holds at most two at once, so both must work the queue.
  simulator.simulator.faults.push({ route: 'file', delayMs: 100, times: count })
  // Both instances see every task finish (both queue it), at the same moment.
  const reads = await Promise.all(ids.flatMap((id) => [a.url, b.url].map(async (base) => await send(base, acme, 'GET', `/v1/tasks/${id}`))))
  t.ok(reads.every((read) => read.statusCode === 200 && read.json.status === 'completed'), 'every task read on both instances says completed')

  const pending = new Set(ids)
  for (let round = 0; round < 500 && pending.size > 0; round++) {
    for (const id of [...pending]) {
      const read = await send(round % 2 === 0 ? a.url : b.url, acme, 'GET', `/v1/tasks/${id}`)
      if (read.json.archive?.status !== 'pending') pending.delete(id)
    }
    if (pending.size > 0) await sleep(50)
  }
  t.equal(pending.size, 0, 'every task left pending')

  t.equal(simulator.simulator.calls.file, count, 'one download per result, across both instances')
  const jobsA = await jobsByOutcome(a.app)
  const jobsB = await jobsByOutcome(b.app)
  t.equal((jobsA.archived ?? 0) + (jobsB.archived ?? 0), count, 'archived once each, counted by the instance that did it')
  t.ok((jobsA.archived ?? 0) > 0 && (jobsB.archived ?? 0) > 0, `both instances worked (${jobsA.archived ?? 0} and ${jobsB.archived ?? 0})`)
  t.equal((jobsA.retry ?? 0) + (jobsB.retry ?? 0) + (jobsA.failed ?? 0) + (jobsB.failed ?? 0), 0, 'no attempt failed')

  // Storage: exactly one object per task, under its own key, no temp file.
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1)).sort()
  t.equal(files.length, count, 'one object per task')
  t.ok(files.every((file) => file.startsWith(`${acme.id}/`) && file.endsWith('/0.mp4')), 'each under the tenant and task')
  t.equal(new Set(files.map((file) => file.split('/')[1])).size, count, 'one per task: no task has two')

  // Records: one per task in Redis, archived, the object's hash and size; no job left, a retention deadline each.
  const recordKeys = await client.keys(`${keys.archive}record:*`)
  t.equal(recordKeys.length, count, 'one record per task')
  const records = (await client.mget(...recordKeys)).map((text) => JSON.parse(text ?? 'null') as ArchiveRecord)
  t.ok(records.every((record) => record.status === 'archived' && record.tenantId === acme.id && record.attempts === 0), 'every record archived at the first attempt')
  t.ok(records.every((record) => record.objects.length === 1 && record.objects[0]!.sha256 === sampleSha256 && record.objects[0]!.size === sampleVideo.length), 'every object with the video\'s SHA-256 and size')
  t.same(records.map((record) => record.objects[0]!.key).sort(), files, 'the records name exactly the stored objects')
  t.equal(await client.zcard(`${keys.archive}due`), 0, 'no job left in the queue')
  t.equal(await client.zcard(`${keys.archive}retention`), count, 'a retention deadline per task')

  // Either instance serves any task's archived video, and both agree on what it is.
  for (const id of ids.slice(0, 4)) {
    const [fromA, fromB] = await Promise.all([send(a.url, acme, 'GET', `/v1/tasks/${id}/content`), send(b.url, acme, 'GET', `/v1/tasks/${id}/content`)])
    t.same([fromA.statusCode, fromA.headers.etag, fromB.statusCode, fromB.headers.etag], [200, `"${sampleSha256}"`, 200, `"${sampleSha256}"`])
    t.same(fromA.bytes, sampleVideo)
  }
  t.equal(simulator.simulator.calls.file, count, 'content served from the archive: no further download')
  const usage = await send(b.url, acme, 'GET', '/v1/usage')
  t.same([usage.json.total.archived_videos, usage.json.total.archived_bytes], [count, count * sampleVideo.length], 'the usage report counts each video once')
})
