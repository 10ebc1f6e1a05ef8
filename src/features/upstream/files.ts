import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Pool, FormData, type Dispatcher } from 'undici'
import { gatewayError } from '../../errors/table.ts'
import { mapUpstreamFailure } from './failure.ts'
import { createScrubber } from './scrub.ts'

/**
 * The upstream's file upload API, as Evolink's own published client uses it
 * (EvoLinkAI/evolink-media-mcp, packages/core/src/services/file-client.ts):
 * `POST <files origin>/api/v1/files/upload/stream`, multipart/form-data with
 * the file in `file`, the upstream key as Bearer; the answer is
 * `{ success, code, msg, data: { file_id, file_url, download_url, expires_at, … } }`,
 * `success: false` (or a non-2xx status) on failure. It is not in the API
 * reference (seeds/), so only what that client relies on is relied on here:
 * `data.file_url`, a link the video API can fetch.
 */
export interface UpstreamFilesOptions {
  /** the files API origin (EVOLINK_FILES_URL); null: no uploads (`off`) */
  baseUrl: string | null
  apiKey: string
  timeoutMs: number
  maxResponseBytes: number
  /** tests pass their own; otherwise one small Pool is owned here */
  dispatcher?: Dispatcher
}

export interface UploadedFile {
  /** a link the upstream can fetch the image from */
  url: string
}

export interface FileUpload {
  bytes: Buffer
  /** the sniffed image type (image/png, …) */
  mimeType: string
  fileName: string
  /** for the access log's upstream fields and the logger */
  request?: FastifyRequest
}

export interface UpstreamFiles {
  /** false with EVOLINK_FILES_URL=off: callers refuse uploads (400) before reading more */
  readonly available: boolean
  upload (file: FileUpload): Promise<UploadedFile>
}

declare module 'fastify' {
  interface FastifyInstance {
    upstreamFiles: UpstreamFiles
  }
}

const uploadPath = '/api/v1/files/upload/stream'
/** uploads are rare and small in number: a few connections, never the task pools' */
const uploadConnections = 8

/** The files API's failure body in the shape mapUpstreamFailure reads (`error.code`, `error.message`). */
function asUpstreamError (body: unknown): unknown {
  if (typeof body !== 'object' || body === null || !('msg' in body)) return body
  const { code, msg } = body as { code?: unknown, msg?: unknown }
  return { error: { code: `file_upload_${String(code ?? 'failed')}`, message: `File upload failed: ${String(msg)}`, param: 'input_reference' } }
}

/** The answer's text, refused past `limit` bytes (UPSTREAM_MAX_RESPONSE_BYTES, as every upstream answer). */
async function readAtMost (body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > limit) throw new Error(`files API answer over ${limit} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks, size).toString('utf8')
}

export function createUpstreamFiles (options: UpstreamFilesOptions): { files: UpstreamFiles, close (): Promise<void> } {
  if (options.baseUrl === null) {
    return {
      files: {
        available: false,
        async upload () { throw new Error('upstream file uploads are off (EVOLINK_FILES_URL=off)') }
      },
      async close () {}
    }
  }
  const base = new URL(options.baseUrl)
  const basePath = base.pathname.replace(/\/+$/, '')
  const dispatcher = options.dispatcher ?? new Pool(base.origin, { connections: uploadConnections, keepAliveTimeout: 30_000, connect: { timeout: Math.min(10_000, options.timeoutMs) } })
  const authorization = `Bearer ${options.apiKey}`
  const scrub = createScrubber([options.apiKey])

  async function upload (file: FileUpload): Promise<UploadedFile> {
    const form = new FormData()
    form.append('file', new Blob([file.bytes], { type: file.mimeType }), file.fileName)
    const started = performance.now()
    let response: Dispatcher.ResponseData
    try {
      response = await dispatcher.request({
        origin: base.origin,
        path: basePath + uploadPath,
        method: 'POST',
        headers: { authorization, accept: 'application/json' },
        body: form,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
        signal: AbortSignal.timeout(options.timeoutMs)
      })
    } catch (cause) {
      throw mapUpstreamFailure({ kind: 'transport', cause, timeoutMs: options.timeoutMs })
    }
    const { statusCode } = response
    let body: unknown
    try {
      body = JSON.parse(await readAtMost(response.body, options.maxResponseBytes))
    } catch (cause) {
      response.body.destroy()
      throw mapUpstreamFailure({ kind: 'unreadable', cause, statusCode })
    } finally {
      file.request?.log.info({ upstreamFilesStatus: statusCode, upstreamFilesMs: Math.round(performance.now() - started) }, 'image uploaded to the upstream files API')
    }
    const answer = body as { success?: unknown, data?: { file_url?: unknown } }
    if (statusCode < 200 || statusCode >= 300 || answer?.success === false) {
      // A 404 here is the files API's own route, never a task: the provider failed.
      const status = (statusCode >= 200 && statusCode < 300) || statusCode === 404 ? 502 : statusCode
      throw mapUpstreamFailure({ kind: 'status', statusCode: status, body: asUpstreamError(body), retryAfter: undefined, scrub })
    }
    const url = answer?.data?.file_url
    if (typeof url !== 'string' || !/^https?:\/\//.test(url)) {
      throw gatewayError('bad_upstream_response', { cause: new Error('files API answer without data.file_url') })
    }
    return { url }
  }

  return {
    files: { available: true, upload },
    async close () {
      if (options.dispatcher === undefined) await dispatcher.close()
    }
  }
}

async function upstreamFilesPlugin (fastify: FastifyInstance, options: UpstreamFilesOptions): Promise<void> {
  const { files, close } = createUpstreamFiles(options)
  fastify.decorate('upstreamFiles', files)
  fastify.addHook('onClose', close)
}

export default fp(upstreamFilesPlugin, { name: 'upstream-files', fastify: '5.x' })
