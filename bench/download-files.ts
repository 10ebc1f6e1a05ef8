import { createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { pipeline } from 'node:stream/promises'
import { Agent, request } from 'undici'

/**
 * The archive scenario's baseline: a plain undici download-to-file of the
 * same URLs with the same concurrency, and nothing else (no SSRF checks, no
 * hashing, no temp-then-rename, no records). Its own process, as the gateway
 * is: the bench's process only drives the reads, so their latencies are
 * measured by an event loop that downloads nothing on either side.
 *
 *   node bench/download-files.ts <connections>
 *
 * Each stdin line `{"urls":[…],"dir":"…","concurrency":N}` is one run; it
 * answers one stdout line `{"bytes":N,"files":N}` when every file is closed
 * (or `{"error":"…"}`). It exits when stdin closes.
 */
const connections = Number(process.argv[2] ?? '16')
const dispatcher = new Agent({ connections, keepAliveTimeout: 65_000 })

interface Job {
  urls: string[]
  dir: string
  concurrency: number
}

async function download (url: string, path: string): Promise<number> {
  const answer = await request(url, { dispatcher })
  if (answer.statusCode !== 200) {
    await answer.body.dump()
    throw new Error(`${url} answered ${answer.statusCode}`)
  }
  const file = createWriteStream(path)
  await pipeline(answer.body, file)
  return file.bytesWritten
}

async function run (job: Job): Promise<{ bytes: number, files: number }> {
  let next = 0
  let bytes = 0
  // A pool of `concurrency` loops, each taking the next URL when its file is done.
  await Promise.all(Array.from({ length: Math.min(job.concurrency, job.urls.length) }, async () => {
    while (next < job.urls.length) {
      const index = next++
      const got = await download(job.urls[index]!, join(job.dir, `${index}.mp4`))
      bytes += got
    }
  }))
  return { bytes, files: job.urls.length }
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  run(JSON.parse(line) as Job).then((result) => {
    process.stdout.write(JSON.stringify(result) + '\n')
  }, (error: unknown) => {
    process.stdout.write(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }) + '\n')
  })
})
lines.on('close', () => {
  dispatcher.close().finally(() => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
})
process.stdout.write(JSON.stringify({ ready: true }) + '\n')
