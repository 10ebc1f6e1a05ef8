import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { redisKeyMap } from '../../../src/features/store/keys.ts'

const redis = await redisForTests()
const leaseMs = 600_000

async function archiveStatus (app: FastifyInstance, tenant: TestTenant, id: string): Promise<string | undefined> {
  const read = await app.inject({ method: 'GET', url: `/v1/tasks/${id}`, headers: { authorization: tenant.authorization } })
  return read.json().archive?.status
}

t.test('Redis: an instance that closes mid-download hands the archive job back; the next one archives it at once, not after ARCHIVE_JOB_LEASE_MS', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const keyPrefix = `vg-test:archive-handback:${process.pid}:${randomBytes(6).toString('hex')}:`
  const client = new Redis(redis.url)
  t.teardown(async () => {
    const keys = await client.keys(`${keyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    client.disconnect()
  })
  const dueKey = `${redisKeyMap(keyPrefix).archive}due`
  const simulator = await startTestSimulator(t, { taskDurationMs: 0 })
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-handback-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const acme = makeTenant('acme')
  const options = {
    upstreamUrl: simulator.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: {
      redisUrl: redis.url,
      redisKeyPrefix: keyPrefix,
      archiveDir: dir,
      archiveAllowedSources: '127.0.0.0/8',
      archivePollIntervalMs: 20,
      archiveJobLeaseMs: leaseMs,
      archiveDownloadTimeoutMs: 60_000,
      shutdownJobGraceMs: 0
    }
  }

  // Instance A: the download of the result hangs (a slow source), A closes while it runs.
  simulator.simulator.faults.push({ route: 'file', hang: true })
  const first = await buildTestApp(t, options)
  await first.ready()
  const created = await first.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })
  t.equal(created.statusCode, 200, created.body)
  const id = created.json().id as string
  t.equal(await archiveStatus(first, acme, id), 'pending', 'the read queued the archive job')
  for (let i = 0; i < 500 && simulator.simulator.calls.file === 0; i++) await sleep(10)
  t.equal(simulator.simulator.calls.file, 1, 'A is downloading')
  const [jobId] = await client.zrange(dueKey, 0, 0)
  t.ok(Number(await client.zscore(dueKey, jobId!)) > Date.now() + leaseMs / 2, 'leased to A')
  await first.close()
  t.ok(Number(await client.zscore(dueKey, jobId!)) <= Date.now(), 'handed back: due now, not at the end of the lease')

  // Instance B takes it over at once.
  const second = await buildTestApp(t, options)
  await second.ready()
  let status: string | undefined
  for (let i = 0; i < 500 && status !== 'archived'; i++) {
    status = await archiveStatus(second, acme, id)
    if (status !== 'archived') await sleep(20)
  }
  t.equal(status, 'archived', 'B archived the task')
  t.equal(simulator.simulator.calls.file, 2, 'one download each')
  t.equal(await client.zscore(dueKey, jobId!), null, 'done: out of the queue')
})
