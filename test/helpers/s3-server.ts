import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  CreateBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client
} from '@aws-sdk/client-s3'
import type { HasTeardown } from './gateway.ts'
import type { S3StorageOptions } from '../../src/features/archive/storage/s3.ts'

/**
 * moto's S3 server as a child of its own. It binds port 0 itself and prints the
 * port it got, so no other socket of the suite can take the port between a probe
 * and the bind. It exits when its stdin closes, which the kernel does when this
 * test process dies however it dies (a tap timeout, SIGKILL): no orphan stays.
 */
const motoScript = `
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
`

export interface S3ForTests {
  endpoint: string
  /** a fresh, empty bucket made at start */
  bucket: string
  /** a client of the test's own, to look at a bucket behind the storage's back */
  client: S3Client
  /** another fresh, empty bucket (one per test keeps tests apart on one server) */
  createBucket (): Promise<string>
  /** what createS3Storage needs to reach `bucket` on this server */
  storageOptions (bucket: string): S3StorageOptions
  /** every object key in the bucket (under `prefix`), sorted */
  listKeys (bucket: string, prefix?: string): Promise<string[]>
  /** the keys of the bucket's incomplete multipart uploads, sorted */
  listUploads (bucket: string): Promise<string[]>
}

const region = 'us-east-1'
const credentials = { accessKeyId: 'test-access-key', secretAccessKey: 'test-secret-key' }

/**
 * A moto S3 server for this test file (start it once, in the file's top level),
 * stopped at `t`'s teardown. Without moto in python3 the tests skip LOUDLY,
 * unless REQUIRE_S3=1 (set by .ci/run), which turns it into a failure.
 */
export async function startS3Server (t: HasTeardown): Promise<S3ForTests | { skip: string }> {
  const probe = spawnSync('python3', ['-c', 'import moto.server'], { encoding: 'utf8' })
  if (probe.status !== 0) {
    const why = probe.error !== undefined ? probe.error.message : (probe.stderr.trim().split('\n').at(-1) ?? `exit ${probe.status}`)
    const message = `S3 NOT AVAILABLE: python3 cannot import moto (${why}): the S3 storage tests are SKIPPED. Install it (pip install 'moto[server]').`
    if (process.env.REQUIRE_S3 === '1') throw new Error(`${message} REQUIRE_S3=1 makes this a failure.`)
    process.stderr.write(`\n!!!!!!!! ${message}\n\n`)
    return { skip: message }
  }

  const child = spawn('python3', ['-c', motoScript], { stdio: ['pipe', 'pipe', 'pipe'] })
  let errors = ''
  // Always drained: a full pipe would block the server.
  child.stderr.on('data', (chunk: Buffer) => { errors = (errors + chunk.toString()).slice(-4000) })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })

  const lines = createInterface({ input: child.stdout })
  const firstLine = await Promise.race([
    new Promise<string>((resolve) => lines.once('line', resolve)),
    exited.then(() => null),
    sleep(20_000, null, { ref: false })
  ])
  lines.close()
  child.stdout.resume()
  if (firstLine === null || !/^\d+$/.test(firstLine.trim())) {
    throw new Error(`moto did not start (first line ${JSON.stringify(firstLine)}):\n${errors}`)
  }
  const endpoint = `http://127.0.0.1:${firstLine.trim()}`

  // Answering HTTP, not only bound.
  let answered = false
  for (let attempt = 0; attempt < 100 && !answered; attempt++) {
    try {
      const response = await fetch(endpoint)
      await response.arrayBuffer()
      answered = true
    } catch {
      await sleep(50)
    }
  }
  if (!answered) throw new Error(`moto at ${endpoint} does not answer HTTP:\n${errors}`)

  const ownClient = new S3Client({ region, endpoint, forcePathStyle: true, credentials })
  t.teardown(() => { ownClient.destroy() })

  async function createBucket (): Promise<string> {
    const bucket = `vg-test-${randomBytes(6).toString('hex')}`
    await ownClient.send(new CreateBucketCommand({ Bucket: bucket }))
    return bucket
  }

  async function listKeys (bucket: string, prefix?: string): Promise<string[]> {
    const keys: string[] = []
    let token: string | undefined
    do {
      const page = await ownClient.send(new ListObjectsV2Command({
        Bucket: bucket,
        ...(prefix !== undefined ? { Prefix: prefix } : {}),
        ...(token !== undefined ? { ContinuationToken: token } : {})
      }))
      for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key)
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
    return keys.sort()
  }

  async function listUploads (bucket: string): Promise<string[]> {
    const page = await ownClient.send(new ListMultipartUploadsCommand({ Bucket: bucket }))
    return (page.Uploads ?? []).map((upload) => upload.Key ?? '').sort()
  }

  return {
    endpoint,
    bucket: await createBucket(),
    client: ownClient,
    createBucket,
    storageOptions: (bucket) => ({ bucket, endpoint, region, forcePathStyle: true, credentials }),
    listKeys,
    listUploads
  }
}
