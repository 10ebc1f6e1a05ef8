import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { buffer, text } from 'node:stream/consumers'
import { setTimeout as sleep } from 'node:timers/promises'
import { CreateMultipartUploadCommand, DeleteBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3'
import t, { type Test } from 'tap'
import { createS3Storage, staleUploadAgeMs } from '../../../../src/features/archive/storage/s3.ts'
import { startS3Server } from '../../../helpers/s3-server.ts'

// One moto server for the file, a fresh bucket per test.
const s3 = await startS3Server(t)

const mib = 1024 * 1024
const chunkSize = 64 * 1024

/** Byte `position` of the test video: recomputable, so a range can be checked without keeping the body. */
function byteAt (position: number): number {
  return (position * 31 + Math.floor(position / 4099)) % 256
}

function chunkAt (offset: number, length: number): Buffer {
  const chunk = Buffer.alloc(length)
  for (let i = 0; i < length; i++) chunk[i] = byteAt(offset + i)
  return chunk
}

/** `size` bytes made one chunk at a time as they are pulled (never all in memory), and their sha256 once sent. */
function generatedBody (size: number): { body: Readable, sha256: () => string } {
  const hash = createHash('sha256')
  async function * generate (): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < size; offset += chunkSize) {
      const chunk = chunkAt(offset, Math.min(chunkSize, size - offset))
      hash.update(chunk)
      yield chunk
    }
  }
  return { body: Readable.from(generate()), sha256: () => hash.digest('hex') }
}

/** Sends `size` bytes and then neither ends nor fails (a download that stalls), or fails with `error`. */
function stallingBody (size: number, error?: Error): Readable {
  let sent = 0
  return new Readable({
    read () {
      if (sent < size) {
        const length = Math.min(chunkSize, size - sent)
        this.push(chunkAt(sent, length))
        sent += length
      } else if (error !== undefined) {
        this.destroy(error)
      }
    }
  })
}

if ('skip' in s3) {
  t.test('S3 storage', { skip: s3.skip }, () => {})
} else {
  const server = s3

  async function openStorage (t: Test, options: { bucket?: string, prefix?: string, now?: () => number } = {}): Promise<{ bucket: string, storage: Awaited<ReturnType<typeof createS3Storage>> }> {
    const bucket = options.bucket ?? await server.createBucket()
    const storage = await createS3Storage({
      ...server.storageOptions(bucket),
      ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
      ...(options.now !== undefined ? { now: options.now } : {})
    })
    t.teardown(() => storage.close())
    return { bucket, storage }
  }

  /** Until the upload of a put in flight shows up (a multipart upload exists), without a fixed wait. */
  async function untilUploadStarted (bucket: string): Promise<void> {
    for (let attempt = 0; attempt < 400; attempt++) {
      if ((await server.listUploads(bucket)).length > 0) return
      await sleep(25)
    }
    throw new Error('no multipart upload started')
  }

  t.test('a 12 MiB body streams as a multipart upload and reads back whole, and in a range across parts', async (t) => {
    const { bucket, storage } = await openStorage(t)
    const size = 12 * mib
    const generated = generatedBody(size)
    await storage.put('tenant-a/task-1/0.mp4', generated.body, { contentType: 'video/mp4' })
    const head = await server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'tenant-a/task-1/0.mp4' }))
    t.match(head.ETag, /-3"$/, 'three parts of 5 MiB, 5 MiB and 2 MiB')
    t.equal(head.ContentType, 'video/mp4')
    t.equal(head.ContentLength, size)

    const whole = await storage.read('tenant-a/task-1/0.mp4')
    t.equal(whole?.size, size)
    const readHash = createHash('sha256')
    for await (const chunk of whole!.body) readHash.update(chunk as Buffer)
    t.equal(readHash.digest('hex'), generated.sha256(), 'sha256 of what was read equals what was sent')

    const range = { start: 5 * mib - 3, end: 5 * mib + 4 }
    const part = await storage.read('tenant-a/task-1/0.mp4', range)
    t.equal(part?.size, size, 'the whole object\'s size')
    t.same(await buffer(part!.body), chunkAt(range.start, 8), 'the bytes across the first part boundary')
    t.same(await server.listUploads(bucket), [])
  })

  t.test('an aborted upload leaves no multipart upload behind, and the older object stays', async (t) => {
    const { bucket, storage } = await openStorage(t)
    await storage.put('tenant-a/task-2/0.mp4', Readable.from(['older']), { contentType: 'video/mp4' })
    const controller = new AbortController()
    const put = storage.put('tenant-a/task-2/0.mp4', stallingBody(6 * mib), { contentType: 'video/mp4', signal: controller.signal })
    await untilUploadStarted(bucket)
    controller.abort(new Error('download cancelled'))
    await t.rejects(put, { name: 'AbortError' })
    t.same(await server.listUploads(bucket), [], 'the multipart upload was aborted')
    t.same(await server.listKeys(bucket), ['tenant-a/task-2/0.mp4'])
    t.equal(await text((await storage.read('tenant-a/task-2/0.mp4'))!.body), 'older')
  })

  t.test('a body that fails after the first part leaves no multipart upload behind', async (t) => {
    const { bucket, storage } = await openStorage(t)
    await t.rejects(storage.put('tenant-a/task-3/0.mp4', stallingBody(6 * mib, new Error('connection reset mid-body')), { contentType: 'video/mp4' }), /reset mid-body/)
    t.same(await server.listUploads(bucket), [])
    t.same(await server.listKeys(bucket), [])
  })

  t.test('an already aborted signal stores nothing', async (t) => {
    const { bucket, storage } = await openStorage(t)
    await t.rejects(storage.put('tenant-a/task-4/0.mp4', Readable.from(['x']), { contentType: 'video/mp4', signal: AbortSignal.abort(new Error('gone')) }), /gone/)
    t.same(await server.listKeys(bucket), [])
  })

  t.test('incomplete uploads under the prefix older than an hour are aborted, at open and on demand', async (t) => {
    const bucket = await server.createBucket()
    for (const key of ['archive/tenant-a/task-5/0.mp4', 'other/0.mp4']) {
      await server.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }))
    }
    // The server's own start time of the uploads (moto reports a fixed one), and a clock relative to it.
    const listed = await server.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))
    const initiated = Math.max(...(listed.Uploads ?? []).map((upload) => upload.Initiated!.getTime()))
    let clock = initiated + staleUploadAgeMs / 2
    const { storage } = await openStorage(t, { bucket, prefix: 'archive', now: () => clock })
    t.same(await server.listUploads(bucket), ['archive/tenant-a/task-5/0.mp4', 'other/0.mp4'], 'younger than an hour: kept at open')
    t.equal(await storage.abortStaleUploads(staleUploadAgeMs), 0)
    clock = initiated + 2 * staleUploadAgeMs
    t.equal(await storage.abortStaleUploads(staleUploadAgeMs), 1)
    t.same(await server.listUploads(bucket), ['other/0.mp4'], 'an upload outside the prefix is not touched')

    await openStorage(t, { bucket, prefix: 'other/', now: () => clock })
    t.same(await server.listUploads(bucket), [], 'opening a storage aborts the stale uploads under its prefix')
  })

  t.test('a bucket that does not exist is a clear rejection', async (t) => {
    await t.rejects(createS3Storage(server.storageOptions('vg-no-such-bucket')), {
      message: /^S3 clean-up of incomplete uploads failed for bucket "vg-no-such-bucket": NoSuchBucket \(HTTP 404\): /
    }, 'at open')
    // A bucket that goes away after open: small and multipart puts reject, they do not hang.
    const bucket = await server.createBucket()
    const { storage } = await openStorage(t, { bucket })
    await server.client.send(new DeleteBucketCommand({ Bucket: bucket }))
    const message = new RegExp(`^S3 put failed for "tenant-a/task-6/0.mp4" in bucket "${bucket}": NoSuchBucket \\(HTTP 404\\): `)
    await t.rejects(storage.put('tenant-a/task-6/0.mp4', Readable.from(['small']), { contentType: 'video/mp4' }), { message })
    await t.rejects(storage.put('tenant-a/task-6/0.mp4', generatedBody(6 * mib).body, { contentType: 'video/mp4' }), { message })
    await t.rejects(storage.read('tenant-a/task-6/0.mp4'), { message: /^S3 read failed for "tenant-a\/task-6\/0.mp4" in bucket ".+": NoSuchBucket/ })
  })

  t.test('a prefix isolates objects', async (t) => {
    const bucket = await server.createBucket()
    const { storage: first } = await openStorage(t, { bucket, prefix: 'first' })
    const { storage: second } = await openStorage(t, { bucket, prefix: '/second/' })
    await first.put('tenant-a/task-7/0.mp4', Readable.from(['one']), { contentType: 'video/mp4' })
    await second.put('tenant-a/task-7/0.mp4', Readable.from(['two']), { contentType: 'video/mp4' })
    t.same(await server.listKeys(bucket), ['first/tenant-a/task-7/0.mp4', 'second/tenant-a/task-7/0.mp4'])
    t.equal(await text((await first.read('tenant-a/task-7/0.mp4'))!.body), 'one')
    t.equal(await text((await second.read('tenant-a/task-7/0.mp4'))!.body), 'two')
    await first.remove(['tenant-a/task-7/0.mp4'])
    t.same(await server.listKeys(bucket), ['second/tenant-a/task-7/0.mp4'])
    t.equal(await first.read('tenant-a/task-7/0.mp4'), null)
    await t.rejects(first.put('../second/tenant-a/task-7/0.mp4', Readable.from(['x']), { contentType: 'video/mp4' }), /outside the prefix/)
    await t.rejects(first.read('tenant-a//0.mp4'), /outside the prefix/)
  })

  t.test('remove deletes more than one batch of 1000 keys', async (t) => {
    const { bucket, storage } = await openStorage(t)
    await storage.put('tenant-a/task-8/0.mp4', Readable.from(['first batch']), { contentType: 'video/mp4' })
    await storage.put('tenant-a/task-8/1500.mp4', Readable.from(['second batch']), { contentType: 'video/mp4' })
    await storage.remove(Array.from({ length: 1501 }, (_, index) => `tenant-a/task-8/${index}.mp4`))
    t.same(await server.listKeys(bucket), [])
  })
}
