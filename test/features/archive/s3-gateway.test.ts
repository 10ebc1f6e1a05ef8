import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from 'undici'
import { sampleVideo } from '../../../src/simulator/media.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startS3Server } from '../../helpers/s3-server.ts'
import { startGatewayProcess } from '../../helpers/server-process.ts'
import { startTestSimulator } from '../../helpers/simulator.ts'

const s3 = await startS3Server(t)
const sampleSha256 = createHash('sha256').update(sampleVideo).digest('hex')

interface Answer { statusCode: number, headers: Record<string, unknown>, body: string, bytes: Buffer }

async function send (base: string, tenant: TestTenant | null, method: 'GET' | 'POST' | 'DELETE', path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const answer = await request(base + path, {
    method,
    headers: { ...(tenant === null ? {} : { authorization: tenant.authorization }), ...headers, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    ...(method === 'POST' ? { body: JSON.stringify(validBody) } : {})
  })
  const bytes = Buffer.from(await answer.body.arrayBuffer())
  return { statusCode: answer.statusCode, headers: answer.headers as Record<string, unknown>, body: bytes.toString('utf8'), bytes }
}

if ('skip' in s3) {
  t.test('a gateway archiving into S3', { skip: s3.skip }, () => {})
} else {
  t.test('a gateway archiving into S3 (ARCHIVE_S3_*): archive, Range 206, If-None-Match 304, erasure 204 then 410, object gone', async (t) => {
    const bucket = await s3.createBucket()
    const { credentials } = s3.storageOptions(bucket) as { credentials: { accessKeyId: string, secretAccessKey: string } }
    const simulator = await startTestSimulator(t, { taskDurationMs: 0 })
    const acme = makeTenant('acme')
    const gateway = await startGatewayProcess(t, {
      upstreamUrl: simulator.url,
      tenants: [acme.definition],
      env: {
        ARCHIVE_S3_BUCKET: bucket,
        ARCHIVE_S3_ENDPOINT: s3.endpoint,
        ARCHIVE_S3_REGION: 'us-east-1',
        ARCHIVE_S3_FORCE_PATH_STYLE: 'true',
        ARCHIVE_S3_PREFIX: 'video-gateway/',
        // The SDK's usual chain: here its environment variables.
        AWS_ACCESS_KEY_ID: credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: 'true',
        ARCHIVE_ALLOWED_SOURCES: '127.0.0.0/8',
        ARCHIVE_POLL_INTERVAL_MS: '50'
      }
    })
    const base = gateway.base

    const id = JSON.parse((await send(base, acme, 'POST', '/v1/videos/generations')).body).id as string
    let task: Record<string, any> = {}
    for (let i = 0; i < 400; i++) {
      task = JSON.parse((await send(base, acme, 'GET', `/v1/tasks/${id}`)).body)
      if (task.archive !== undefined && task.archive.status !== 'pending') break
      await sleep(25)
    }
    t.equal(task.archive?.status, 'archived', 'archived into the bucket')
    const upstreamId = id.split('.')[0]!
    t.same(await s3.listKeys(bucket), [`video-gateway/${acme.id}/${upstreamId}/0.mp4`], 'one object, under the prefix, the tenant and the task')
    t.same(await s3.listUploads(bucket), [], 'no multipart upload left open')

    const whole = await send(base, acme, 'GET', `/v1/tasks/${id}/content`)
    t.equal(whole.statusCode, 200)
    t.same(whole.bytes, sampleVideo, 'the video, read back from S3')
    t.same([whole.headers['content-type'], whole.headers['content-length'], whole.headers.etag, whole.headers['accept-ranges']], ['video/mp4', String(sampleVideo.length), `"${sampleSha256}"`, 'bytes'])

    const part = await send(base, acme, 'GET', `/v1/tasks/${id}/content`, { range: 'bytes=100-1123' })
    t.equal(part.statusCode, 206)
    t.equal(part.headers['content-range'], `bytes 100-1123/${sampleVideo.length}`)
    t.equal(part.headers['content-length'], '1024')
    t.same(part.bytes, sampleVideo.subarray(100, 1124), 'the range, from S3')
    const tail = await send(base, acme, 'GET', `/v1/tasks/${id}/content`, { range: 'bytes=-16' })
    t.equal(tail.statusCode, 206)
    t.same(tail.bytes, sampleVideo.subarray(-16))

    const notModified = await send(base, acme, 'GET', `/v1/tasks/${id}/content`, { 'if-none-match': `"${sampleSha256}"` })
    t.equal(notModified.statusCode, 304)
    t.equal(notModified.bytes.length, 0)

    // The signed link of the task read, without Authorization (a <video src>).
    const link = new URL(task.results[0])
    const viaLink = await send(base, null, 'GET', link.pathname + link.search, { range: 'bytes=0-9' })
    t.equal(viaLink.statusCode, 206)
    t.same(viaLink.bytes, sampleVideo.subarray(0, 10))

    t.equal((await send(base, acme, 'DELETE', `/v1/tasks/${id}/content`)).statusCode, 204)
    t.same(await s3.listKeys(bucket), [], 'the object is gone from the bucket')
    t.equal((await send(base, acme, 'DELETE', `/v1/tasks/${id}/content`)).statusCode, 204, 'idempotent')
    assertErrorResponse(t, await send(base, acme, 'GET', `/v1/tasks/${id}/content`), {
      status: 410,
      code: 'content_deleted',
      type: 'invalid_request_error',
      message: 'The archived videos of this task were deleted (on request).'
    })
    assertErrorResponse(t, await send(base, null, 'GET', link.pathname + link.search), {
      status: 410,
      code: 'content_deleted',
      type: 'invalid_request_error',
      message: 'The archived videos of this task were deleted (on request).'
    })
    t.equal(JSON.parse((await send(base, acme, 'GET', `/v1/tasks/${id}`)).body).archive.status, 'erased')
    t.equal(simulator.simulator.calls.file, 1, 'one download: everything else came from S3')
  })
}
