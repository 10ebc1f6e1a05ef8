import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'
import t, { type Test } from 'tap'
import { createDirectoryStorage } from '../../../../src/features/archive/storage/directory.ts'
import { createS3Storage } from '../../../../src/features/archive/storage/s3.ts'
import type { ArchiveStorage } from '../../../../src/features/archive/storage/storage.ts'
import { startS3Server } from '../../../helpers/s3-server.ts'

/** Each backend of ArchiveStorage, opened fresh for one test, and how to list what it holds. */
interface StorageBackend {
  name: string
  open (t: Test): Promise<{ storage: ArchiveStorage, listKeys (): Promise<string[]> }>
  /** why this backend cannot run here (tests skip loudly), or false */
  skip?: string | false
}

const directoryBackend: StorageBackend = {
  name: 'directory',
  async open (t) {
    const root = await mkdtemp(join(tmpdir(), 'vg-archive-'))
    t.teardown(async () => { await rm(root, { recursive: true, force: true }) })
    const storage = await createDirectoryStorage({ root })
    async function listKeys (): Promise<string[]> {
      const entries = await readdir(root, { recursive: true, withFileTypes: true })
      return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(root.length + 1)).sort()
    }
    return { storage, listKeys }
  }
}

// One moto server for the file, a fresh bucket per test.
const s3 = await startS3Server(t)

const s3Backend: StorageBackend = {
  name: 's3',
  skip: 'skip' in s3 ? s3.skip : false,
  async open (t) {
    if ('skip' in s3) throw new Error(s3.skip)
    const server = s3
    const bucket = await server.createBucket()
    const storage = await createS3Storage(server.storageOptions(bucket))
    t.teardown(() => storage.close())
    async function listKeys (): Promise<string[]> {
      // An incomplete multipart upload is invisible to ListObjectsV2 but is a part left behind all the same.
      const uploads = await server.listUploads(bucket)
      return [...await server.listKeys(bucket), ...uploads.map((key) => `incomplete upload of ${key}`)]
    }
    return { storage, listKeys }
  }
}

/** A body that sends `chunks` and then fails, as a download cut mid-way does. */
function failingBody (chunks: string[]): Readable {
  let sent = 0
  return new Readable({
    read () {
      if (sent < chunks.length) this.push(chunks[sent++])
      else this.destroy(new Error('connection reset mid-body'))
    }
  })
}

function storageContract (backend: StorageBackend): void {
  t.test(`${backend.name}: put then read the whole object and ranges`, { skip: backend.skip ?? false }, async (t) => {
    const opened = await backend.open(t)
    const { storage } = opened
    await storage.put('tenant-a/task-1/0.mp4', Readable.from([Buffer.from('0123456789')]), { contentType: 'video/mp4' })
    const whole = await storage.read('tenant-a/task-1/0.mp4')
    t.equal(whole?.size, 10)
    t.equal(await text(whole!.body), '0123456789')
    const part = await storage.read('tenant-a/task-1/0.mp4', { start: 2, end: 5 })
    t.equal(part?.size, 10, 'the size is the whole object\'s')
    t.equal(await text(part!.body), '2345')
    t.equal(await storage.read('tenant-a/task-1/1.mp4'), null, 'a missing object is null')
  })

  t.test(`${backend.name}: a range past the end reads what there is, with the whole size`, { skip: backend.skip ?? false }, async (t) => {
    const { storage } = await backend.open(t)
    await storage.put('tenant-a/task-6/0.mp4', Readable.from([Buffer.from('0123456789')]), { contentType: 'video/mp4' })
    const tail = await storage.read('tenant-a/task-6/0.mp4', { start: 8, end: 20 })
    t.equal(tail?.size, 10)
    t.equal(await text(tail!.body), '89', 'the end is cut at the object\'s end')
    const beyond = await storage.read('tenant-a/task-6/0.mp4', { start: 10, end: 20 })
    t.equal(beyond?.size, 10)
    t.equal(await text(beyond!.body), '', 'a range that starts past the end is empty')
    t.equal(await storage.read('tenant-a/task-6/1.mp4', { start: 0, end: 3 }), null, 'a missing object is null with a range too')
  })

  t.test(`${backend.name}: a body that fails leaves no object, and an older object stays whole`, { skip: backend.skip ?? false }, async (t) => {
    const opened = await backend.open(t)
    const { storage, listKeys } = opened
    await t.rejects(storage.put('tenant-a/task-2/0.mp4', failingBody(['part one ', 'part two']), { contentType: 'video/mp4' }), /reset mid-body/)
    t.equal(await storage.read('tenant-a/task-2/0.mp4'), null)
    t.same(await listKeys(), [], 'no temp file or part left behind')
    await storage.put('tenant-a/task-2/0.mp4', Readable.from(['complete']), { contentType: 'video/mp4' })
    await t.rejects(storage.put('tenant-a/task-2/0.mp4', failingBody(['half']), { contentType: 'video/mp4' }))
    t.equal(await text((await storage.read('tenant-a/task-2/0.mp4'))!.body), 'complete')
  })

  t.test(`${backend.name}: an aborted put leaves nothing`, { skip: backend.skip ?? false }, async (t) => {
    const opened = await backend.open(t)
    const { storage, listKeys } = opened
    const controller = new AbortController()
    const endless = new Readable({ read () { setTimeout(() => this.push(Buffer.alloc(64 * 1024)), 5) } })
    setTimeout(() => controller.abort(new Error('stopping')), 50)
    await t.rejects(storage.put('tenant-a/task-3/0.mp4', endless, { contentType: 'video/mp4', signal: controller.signal }))
    t.same(await listKeys(), [])
  })

  t.test(`${backend.name}: remove deletes, and removing a missing key is not an error`, { skip: backend.skip ?? false }, async (t) => {
    const opened = await backend.open(t)
    const { storage, listKeys } = opened
    await storage.put('tenant-a/task-4/0.mp4', Readable.from(['a']), { contentType: 'video/mp4' })
    await storage.put('tenant-a/task-4/1.mp4', Readable.from(['b']), { contentType: 'video/mp4' })
    await storage.put('tenant-b/task-5/0.mp4', Readable.from(['c']), { contentType: 'video/mp4' })
    await storage.remove(['tenant-a/task-4/0.mp4', 'tenant-a/task-4/1.mp4', 'tenant-a/task-4/9.mp4'])
    t.same(await listKeys(), ['tenant-b/task-5/0.mp4'])
    await storage.remove(['tenant-a/task-4/0.mp4'])
    await storage.close()
  })
}

storageContract(directoryBackend)
storageContract(s3Backend)

t.test('directory: a key that leaves the root is refused', async (t) => {
  const opened = await directoryBackend.open(t)
  await t.rejects(opened.storage.put('../escape.mp4', Readable.from(['x']), { contentType: 'video/mp4' }), /outside the directory/)
  await t.rejects(opened.storage.read('.incoming/x'), /outside the directory/)
})
