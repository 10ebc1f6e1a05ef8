import { createHash } from 'node:crypto'
import { pipeline, Transform, type TransformCallback } from 'node:stream'
import { Agent, request, type Dispatcher } from 'undici'
import { DestinationError, destinationProblem, guardedLookup, type DestinationPolicy, type LookupFunction } from '../../http/destination.ts'
import type { ArchiveStorage } from './storage/storage.ts'

/** A download that did not yield a complete video; `permanent` ones are not tried again. */
export class DownloadFailure extends Error {
  override name = 'DownloadFailure'
  readonly permanent: boolean
  constructor (message: string, options: { permanent: boolean, cause?: unknown }) {
    super(message, { cause: options.cause })
    this.permanent = options.permanent
  }
}

export interface Downloaded {
  size: number
  sha256: string
  contentType: string
}

export interface SourceDownloader {
  /** downloads `url` into `key` of `storage`: all of it and only a video, or nothing (throws DownloadFailure) */
  download (options: { url: string, key: string, storage: ArchiveStorage, signal: AbortSignal }): Promise<Downloaded>
  /**
   * Opens `url` for streaming it on (content before the archive is done), under the same
   * rules; `range` is passed through. Answers 200 or 206 with a video type, or throws DownloadFailure.
   */
  open (options: { url: string, range?: string, signal: AbortSignal }): Promise<Dispatcher.ResponseData>
  close (): Promise<void>
}

export interface SourceDownloaderOptions {
  /** who may be downloaded from: public https, or the allow-list (ARCHIVE_ALLOWED_SOURCES) */
  policy: DestinationPolicy
  maxBytes: number
  /** connect, headers, and the longest silence mid-body */
  idleTimeoutMs: number
  /** the whole download */
  totalTimeoutMs: number
  lookup?: LookupFunction
  /** replaces the connection pool (tests) */
  dispatcher?: Dispatcher
}

/** Drops an answer's body and its connection (not reused: the rest of the body is not worth reading). */
function discard (answer: Dispatcher.ResponseData): void {
  answer.body.on('error', () => {})
  answer.body.destroy()
}

const maxRedirects = 3
const redirectStatuses = new Set([301, 302, 303, 307, 308])

/** `video/*`, or the generic binary types storage services label everything with. */
function isVideoType (contentType: string): boolean {
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase()
  return type.startsWith('video/') || type === 'application/octet-stream' || type === 'binary/octet-stream'
}

/** Hashes and counts the bytes on their way to storage, and cuts the stream past the size limit. */
class Meter extends Transform {
  readonly #hash = createHash('sha256')
  readonly #maxBytes: number
  bytes = 0
  constructor (maxBytes: number) {
    super()
    this.#maxBytes = maxBytes
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length
    if (this.bytes > this.#maxBytes) {
      callback(new DownloadFailure(`the video is larger than ARCHIVE_MAX_BYTES (${this.#maxBytes} bytes)`, { permanent: true }))
      return
    }
    this.#hash.update(chunk)
    callback(null, chunk)
  }

  digest (): string { return this.#hash.digest('hex') }
}

/** A short reason for the job record and the log: never a full URL (signed CDN links carry credentials). */
function describe (error: unknown): DownloadFailure {
  if (error instanceof DownloadFailure) return error
  const cause = (error as { cause?: unknown }).cause
  if (error instanceof DestinationError || cause instanceof DestinationError) {
    return new DownloadFailure((cause instanceof DestinationError ? cause : error as Error).message, { permanent: true, cause: error })
  }
  const name = (error as Error).name
  if (name === 'TimeoutError' || name === 'HeadersTimeoutError' || name === 'BodyTimeoutError' || name === 'ConnectTimeoutError') return new DownloadFailure('the download timed out', { permanent: false, cause: error })
  if (name === 'AbortError') return new DownloadFailure('the download was aborted', { permanent: false, cause: error })
  const code = (error as { code?: string }).code ?? (cause as { code?: string } | undefined)?.code
  if (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return new DownloadFailure('the video was cut short (connection closed before its end)', { permanent: false, cause: error })
  return new DownloadFailure(code === undefined ? 'the download failed' : `the download failed (${code})`, { permanent: false, cause: error })
}

/**
 * Result downloads, judged like webhook destinations: the SSRF rules apply to
 * every address connected to (the guarded lookup) and to every redirect
 * target (at most three, each checked before it is followed). The body goes
 * through a meter (SHA-256, size, limit) straight into storage: never a whole
 * file in memory, and a body that fails half-way leaves no object.
 */
export function createSourceDownloader (options: SourceDownloaderOptions): SourceDownloader {
  const ownAgent = options.dispatcher === undefined
    ? new Agent({
      connect: { lookup: guardedLookup({ policy: options.policy, lookup: options.lookup, what: 'result URL' }) as never, timeout: options.idleTimeoutMs },
      headersTimeout: options.idleTimeoutMs,
      bodyTimeout: options.idleTimeoutMs,
      connections: 16
    })
    : null
  const dispatcher = options.dispatcher ?? ownAgent!

  async function follow (url: string, signal: AbortSignal, range?: string): Promise<Dispatcher.ResponseData> {
    let current = url
    for (let redirects = 0; ; redirects++) {
      const problem = await destinationProblem(current, { policy: options.policy, lookup: options.lookup })
      if (problem !== null) throw new DownloadFailure(`the result URL ${problem}${redirects > 0 ? ` (after ${redirects} redirect${redirects > 1 ? 's' : ''})` : ''}`, { permanent: true })
      const answer = await request(current, { method: 'GET', dispatcher, signal, headers: { 'user-agent': 'video-gateway-archive', accept: 'video/*', ...(range === undefined ? {} : { range }) } })
      if (!redirectStatuses.has(answer.statusCode)) return answer
      discard(answer)
      const location = answer.headers.location
      if (typeof location !== 'string') throw new DownloadFailure(`the source answered ${answer.statusCode} without a Location`, { permanent: false })
      if (redirects + 1 > maxRedirects) throw new DownloadFailure(`more than ${maxRedirects} redirects`, { permanent: true })
      current = new URL(location, current).toString()
    }
  }

  /** A 200 (or, asked for a range, 206) with a video type; anything else is a DownloadFailure. */
  async function openVideo (url: string, signal: AbortSignal, range?: string): Promise<Dispatcher.ResponseData> {
    const answer = await follow(url, signal, range)
    if (answer.statusCode !== 200 && !(range !== undefined && answer.statusCode === 206)) {
      discard(answer)
      // 404 and 410 included: a CDN may lag behind the task, and the link's 24 h bound the retries.
      throw new DownloadFailure(`the source answered ${answer.statusCode}`, { permanent: false })
    }
    const contentType = String(answer.headers['content-type'] ?? '')
    if (!isVideoType(contentType)) {
      discard(answer)
      throw new DownloadFailure(`the source sent ${contentType === '' ? 'no content type' : `"${contentType.slice(0, 100)}"`}, not a video`, { permanent: true })
    }
    return answer
  }

  return {
    async open ({ url, range, signal }) {
      try {
        return await openVideo(url, signal, range)
      } catch (error) {
        throw describe(error)
      }
    },
    async download ({ url, key, storage, signal }) {
      const deadline = AbortSignal.any([signal, AbortSignal.timeout(options.totalTimeoutMs)])
      try {
        const answer = await openVideo(url, deadline)
        const contentType = String(answer.headers['content-type'])
        const announced = Number(answer.headers['content-length'])
        if (Number.isFinite(announced) && announced > options.maxBytes) {
          discard(answer)
          throw new DownloadFailure(`the video is larger than ARCHIVE_MAX_BYTES (${options.maxBytes} bytes)`, { permanent: true })
        }
        const meter = new Meter(options.maxBytes)
        // Joined both ways: the body's failure fails the put, and a put that fails (the size
        // limit, storage) destroys the body, whose connection would otherwise stay half-read.
        const metered = pipeline(answer.body, meter, () => {})
        await storage.put(key, metered, { contentType, signal: deadline })
        if (Number.isFinite(announced) && meter.bytes !== announced) {
          await storage.remove([key])
          throw new DownloadFailure(`the video was cut short (${meter.bytes} of ${announced} bytes)`, { permanent: false })
        }
        return { size: meter.bytes, sha256: meter.digest(), contentType: contentType.split(';', 1)[0]!.trim() }
      } catch (error) {
        throw describe(error)
      }
    },
    // Downloads in flight were aborted already (the worker stopped): idle sockets need not be waited for.
    async close () { await ownAgent?.destroy() }
  }
}
