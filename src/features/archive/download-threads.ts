import { Worker, type MessagePort } from 'node:worker_threads'
import { parseDestinationPolicy, type DestinationPolicy } from '../../http/destination.ts'
import { createSourceDownloader, DownloadFailure, type Downloaded } from './download.ts'
import { openStorage } from './storage/open.ts'
import type { ArchiveStorage, StorageDescriptor } from './storage/storage.ts'

/**
 * Archive downloads on worker threads. Moving 20 MB videos costs the event
 * loop that runs them: SHA-256 is synchronous, and every 64 KiB chunk is an
 * external buffer that only a garbage collection frees (measured: ≈ 40
 * mark-compacts per 2 GB on the main thread, the other tenants' reads waiting
 * behind them). On a thread of its own, with a small young generation, the
 * same work frees its chunks in cheap scavenges and delays nobody's request.
 *
 * The thread does all of one video: the download with its SSRF checks (every
 * hop, every address), the size, type and truncation checks, the hash, and
 * the put into storage, which it opens itself from a descriptor (plain data:
 * a directory, or an S3 bucket with the SDK's credential chain). The main
 * thread keeps the queue, the leases, the records and the outcome; it gets
 * back `{ size, sha256, contentType }` or the same DownloadFailure as the
 * in-thread path would throw.
 */

/** What a thread is started with (workerData): the downloader's settings and the storage, as data. */
export interface DownloadThreadInit {
  /** the source policy, as ARCHIVE_ALLOWED_SOURCES is written (parseDestinationPolicy) */
  policy: string
  maxBytes: number
  idleTimeoutMs: number
  totalTimeoutMs: number
  storage: StorageDescriptor
}

export type ToThread =
  | { type: 'download', id: number, url: string, key: string }
  | { type: 'cancel', id: number }

/** The error behind a failure, as far as it survives a thread boundary (for the debug log). */
export interface FailureCause { name: string, message: string, code?: string }

export type FromThread =
  | { type: 'done', id: number, result: Downloaded }
  | { type: 'failed', id: number, message: string, permanent: boolean, cause?: FailureCause }

/** A policy written back as the setting it came from, for a thread to parse again. */
export function policyToString (policy: DestinationPolicy): string {
  return [...policy.hosts, ...policy.ranges.map(([network, bits]) => `${network.toString()}/${bits}`)].join(',')
}

function causeOf (error: unknown): FailureCause | undefined {
  if (!(error instanceof Error)) return undefined
  const code = (error as NodeJS.ErrnoException).code
  return { name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) }
}

/**
 * The thread's side: downloads what `port` asks for, several at once, each
 * answered once (done or failed); a cancel aborts one, which then answers
 * `failed` after its put has removed what it wrote. Returns a close for tests
 * that serve on a MessageChannel in-process.
 */
export function serveDownloads (port: MessagePort, init: DownloadThreadInit): { close: () => Promise<void> } {
  const downloader = createSourceDownloader({
    policy: parseDestinationPolicy(init.policy, 'ARCHIVE_ALLOWED_SOURCES'),
    maxBytes: init.maxBytes,
    idleTimeoutMs: init.idleTimeoutMs,
    totalTimeoutMs: init.totalTimeoutMs
  })
  // Without clean-up: that is the main thread's, at start, and its puts may be under way.
  const opening = openStorage(init.storage, { clean: false })
  // Awaited per download; unhandled until the first one asks.
  opening.catch(() => {})
  const running = new Map<number, { controller: AbortController, answered: Promise<void> }>()

  async function run (id: number, url: string, key: string, signal: AbortSignal): Promise<FromThread> {
    let storage: ArchiveStorage
    try {
      storage = await opening
    } catch (error) {
      return { type: 'failed', id, message: `the download thread cannot open the archive storage (${(error as Error).message})`, permanent: false, cause: causeOf(error) }
    }
    try {
      return { type: 'done', id, result: await downloader.download({ url, key, storage, signal }) }
    } catch (error) {
      const failure = error as DownloadFailure
      const cause = causeOf(failure.cause)
      return { type: 'failed', id, message: failure.message, permanent: failure.permanent, ...(cause === undefined ? {} : { cause }) }
    }
  }

  port.on('message', (message: ToThread) => {
    if (message.type === 'cancel') {
      running.get(message.id)?.controller.abort()
      return
    }
    const { id, url, key } = message
    const controller = new AbortController()
    // run() never rejects: every outcome is an answer.
    const answered = run(id, url, key, controller.signal).then((answer) => {
      running.delete(id)
      port.postMessage(answer)
    })
    running.set(id, { controller, answered })
  })
  return {
    async close () {
      // Aborted, and waited for: their puts remove what they wrote.
      const under = [...running.values()]
      for (const { controller } of under) controller.abort()
      await Promise.all(under.map(async ({ answered }) => { await answered }))
      port.close()
      await downloader.close()
      await (await opening.catch(() => null))?.close()
    }
  }
}

export interface ArchiveDownloads {
  /** downloads `url` into `key`: all of it and only a video, or nothing (rejects with a DownloadFailure) */
  download (options: { url: string, key: string, signal: AbortSignal }): Promise<Downloaded>
  /** ends the threads (downloads still running fail as aborted; a put cut short leaves no object) */
  close (): Promise<void>
}

/**
 * A thread's young generation, in MB. Small on purpose: a download's garbage
 * is chunk wrappers whose 64 KiB buffers are freed by the scavenge that
 * collects them, so frequent small scavenges keep the external memory (RSS)
 * low. Measured, one thread, 100 × 20 MB at 8 at once: peak RSS growth
 * 22–26 MB with 1, 26–40 with 2, 34 with 4, 61 with 16 (the main thread
 * alone, default heap: 42–56).
 */
export const threadYoungGenerationMb = 1

interface Pending { resolve: (result: Downloaded) => void, reject: (error: DownloadFailure) => void }
interface Slot { worker: Worker | null, pending: Map<number, Pending> }

/** The thread's entry module, next to this one: `.ts` when run from src, `.js` from dist. */
export const threadEntry = new URL(import.meta.url.endsWith('.ts') ? './download-worker.ts' : './download-worker.js', import.meta.url)

/**
 * The main thread's side: `size` threads, started on first use (a gateway
 * that never archives starts none), each given the next download when it has
 * the fewest under way. A thread that dies (out of memory, a crash) fails its
 * downloads as retryable and is started again on the next one.
 */
export function createDownloadThreads (options: { size: number, init: DownloadThreadInit, entry?: URL, youngGenerationMb?: number }): ArchiveDownloads {
  const slots: Slot[] = Array.from({ length: Math.max(1, options.size) }, () => ({ worker: null, pending: new Map() }))
  let nextId = 1
  let closed = false

  function stopped (slot: Slot, worker: Worker, reason: string): void {
    if (slot.worker !== worker) return
    slot.worker = null
    const failure = closed ? new DownloadFailure('the download was aborted', { permanent: false }) : new DownloadFailure(`the download thread stopped (${reason})`, { permanent: false })
    for (const pending of slot.pending.values()) pending.reject(failure)
    slot.pending.clear()
  }

  function start (slot: Slot): Worker {
    const worker = new Worker(options.entry ?? threadEntry, {
      workerData: options.init,
      resourceLimits: { maxYoungGenerationSizeMb: options.youngGenerationMb ?? threadYoungGenerationMb },
      // The thread's log would be the gateway's stdout: it has nothing to say there.
      stdout: false,
      stderr: false
    })
    worker.on('message', (message: FromThread) => {
      const pending = slot.pending.get(message.id)
      if (pending === undefined) return
      slot.pending.delete(message.id)
      if (slot.pending.size === 0) worker.unref()
      if (message.type === 'done') {
        pending.resolve(message.result)
        return
      }
      const cause = message.cause === undefined ? undefined : Object.assign(new Error(message.cause.message), { name: message.cause.name, code: message.cause.code })
      pending.reject(new DownloadFailure(message.message, { permanent: message.permanent, cause }))
    })
    worker.on('error', (error) => { stopped(slot, worker, error.message) })
    worker.on('exit', (code) => { stopped(slot, worker, `exit code ${code}`) })
    // Idle threads never keep the process alive; one with downloads under way does (ref() below).
    worker.unref()
    slot.worker = worker
    return worker
  }

  return {
    async download ({ url, key, signal }) {
      if (closed || signal.aborted) throw new DownloadFailure('the download was aborted', { permanent: false })
      const slot = slots.reduce((best, candidate) => candidate.pending.size < best.pending.size ? candidate : best)
      const worker = slot.worker ?? start(slot)
      const id = nextId++
      const onAbort = (): void => { worker.postMessage({ type: 'cancel', id } satisfies ToThread) }
      try {
        return await new Promise<Downloaded>((resolve, reject) => {
          slot.pending.set(id, { resolve, reject })
          worker.ref()
          worker.postMessage({ type: 'download', id, url, key } satisfies ToThread)
          // The thread answers a cancel after its put removed what it wrote: waited for, so nothing is left half-done.
          signal.addEventListener('abort', onAbort, { once: true })
        })
      } finally {
        signal.removeEventListener('abort', onAbort)
      }
    },
    async close () {
      closed = true
      await Promise.all(slots.map(async (slot) => { await slot.worker?.terminate() }))
    }
  }
}
