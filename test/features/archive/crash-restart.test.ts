import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { request } from 'undici'
import type { ArchiveRecord } from '../../../src/features/archive/records.ts'
import { redisKeyMap } from '../../../src/features/store/keys.ts'
import { sampleVideo } from '../../../src/simulator/media.ts'
import { makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { startGatewayProcess } from '../../helpers/server-process.ts'
import { startTestSimulator } from '../../helpers/simulator.ts'

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex')

async function send (base: string, tenant: TestTenant, method: 'GET' | 'POST', path: string): Promise<{ statusCode: number, headers: Record<string, unknown>, bytes: Buffer, json (): any }> {
  const answer = await request(base + path, {
    method,
    headers: { authorization: tenant.authorization, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    ...(method === 'POST' ? { body: JSON.stringify(validBody) } : {})
  })
  const bytes = Buffer.from(await answer.body.arrayBuffer())
  return { statusCode: answer.statusCode, headers: answer.headers as Record<string, unknown>, bytes, json: () => JSON.parse(bytes.toString('utf8')) }
}

/** Files under `dir`, relative, sorted; the temp directory apart. */
async function listFiles (dir: string): Promise<{ objects: string[], incoming: string[] }> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1)).sort()
  return { objects: files.filter((file) => !file.startsWith('.incoming/')), incoming: files.filter((file) => file.startsWith('.incoming/')) }
}

t.test('a gateway killed (SIGKILL) mid-download restarts and completes the object, and no half object is ever visible', { skip }, async (t) => {
  if ('skip' in redis) return
  const keyPrefix = `vg-test:archive-crash:${process.pid}:${randomBytes(6).toString('hex')}:`
  const client = new Redis(redis.url)
  t.teardown(async () => {
    const keys = await client.keys(`${keyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    client.disconnect()
  })
  const simulator = await startTestSimulator(t, { taskDurationMs: 0 })
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-crash-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const acme = makeTenant('acme')
  const env = {
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: keyPrefix,
    ARCHIVE_DIR: dir,
    ARCHIVE_ALLOWED_SOURCES: '127.0.0.0/8',
    ARCHIVE_POLL_INTERVAL_MS: '50',
    // The job comes back this long after the dead instance claimed it (and a download must end within it).
    ARCHIVE_JOB_LEASE_MS: '5000'
  }
  const first = await startGatewayProcess(t, { upstreamUrl: simulator.url, tenants: [acme.definition], env })

  const id = (await send(first.base, acme, 'POST', '/v1/videos/generations')).json().id as string
  // The download in flight when the process dies: 1 KiB every 300 ms (the whole video would take seconds).
  simulator.simulator.faults.push({ route: 'file', slowVideo: 300, chunkBytes: 1024 })
  t.equal((await send(first.base, acme, 'GET', `/v1/tasks/${id}`)).json().status, 'completed', 'the read that queues the archive')
  let partial: { objects: string[], incoming: string[] } = { objects: [], incoming: [] }
  let partialSize = 0
  for (let i = 0; i < 400 && partialSize === 0; i++) {
    partial = await listFiles(dir)
    if (partial.incoming.length > 0) partialSize = (await stat(join(dir, partial.incoming[0]!)).catch(() => ({ size: 0 }))).size
    if (partialSize === 0) await sleep(10)
  }
  t.ok(partialSize > 0 && partialSize < sampleVideo.length, `the download is under way (${partialSize} of ${sampleVideo.length} bytes in the temp file)`)

  first.server.child.kill('SIGKILL')
  await first.server.exited
  t.equal(first.server.child.signalCode, 'SIGKILL')

  const afterKill = await listFiles(dir)
  t.same(afterKill.objects, [], 'no object is visible after the kill: the part is only in the temp directory')
  const recordKey = `${redisKeyMap(keyPrefix).archive}record:${id.split('.')[0]}`
  const pendingRecord = JSON.parse(await client.get(recordKey) ?? 'null') as ArchiveRecord | null
  t.match(pendingRecord, { status: 'pending', objects: [], attempts: 0 }, 'the record says pending, with nothing stored')
  t.equal(await client.zcard(`${redisKeyMap(keyPrefix).archive}due`), 1, 'the job is still queued (its lease held by the dead instance)')

  // The restart: the same storage and Redis. The job's lease runs out and the download starts over.
  const second = await startGatewayProcess(t, { upstreamUrl: simulator.url, tenants: [acme.definition], env })
  t.same((await listFiles(dir)).incoming, [], 'opening the storage removed the part the crash left')
  let task: Record<string, any> = {}
  for (let i = 0; i < 600; i++) {
    task = (await send(second.base, acme, 'GET', `/v1/tasks/${id}`)).json()
    if (task.archive?.status !== 'pending') break
    await sleep(25)
  }
  t.equal(task.archive?.status, 'archived', 'archived by the restarted instance')
  t.equal(simulator.simulator.calls.file, 2, 'downloaded twice: the attempt the kill cut, and the whole one')

  const upstreamBytes = Buffer.from(await (await request(task.upstream_results[0])).body.arrayBuffer())
  const expected = sha256(upstreamBytes)
  t.equal(expected, sha256(sampleVideo), 'the simulator serves the sample video')
  const content = await send(second.base, acme, 'GET', `/v1/tasks/${id}/content`)
  t.equal(content.statusCode, 200)
  t.equal(sha256(content.bytes), expected, 'the archived video has the upstream\'s SHA-256')
  t.equal(content.headers.etag, `"${expected}"`, 'and the hash recorded on the way in says so')
  const stored = await listFiles(dir)
  t.same(stored.incoming, [], 'no temp file left')
  t.equal(stored.objects.length, 1, 'one object')
  t.equal(sha256(await readFile(join(dir, stored.objects[0]!))), expected, 'the file itself is whole')
  const record = JSON.parse(await client.get(recordKey) ?? 'null') as ArchiveRecord
  t.match(record, { status: 'archived', attempts: 0, lastError: null, objects: [{ index: 0, sha256: expected, size: sampleVideo.length }] }, 'the record: archived, no failed attempt counted for the kill')
})
