import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import multipart from '@fastify/multipart'
import { gate } from './api-routes.ts'
import type { SimulatorContext } from './types.ts'

/** One file the simulated files API holds. */
export interface UploadedFile {
  id: string
  name: string
  mimeType: string
  bytes: Buffer
  /** clock time it arrived (ms) */
  at: number
}

/** The upstream takes images up to 10 MB (upstream-facts.md); its files API is assumed to hold the same. */
const maxFileBytes = 10 * 1024 * 1024
/** Bounded: a long simulator-mode session keeps only the newest uploads. */
const maxFiles = 100
/** Evolink's client reads `expires_at`; the real lifetime is not published, a day is assumed. */
const fileLifetimeMs = 24 * 60 * 60 * 1000

/**
 * The simulated files API, in the contract Evolink's own client uses
 * (evolink-media-mcp, packages/core/src/services/file-client.ts):
 * `{ success, code, msg, data }` answers, the file in the `file` form field,
 * and a link (`data.file_url`) that needs no key, as a CDN's would.
 */
export class UploadStore {
  readonly #files = new Map<string, UploadedFile>()

  add (file: Omit<UploadedFile, 'id'>): UploadedFile {
    const stored = { ...file, id: `file_${randomBytes(9).toString('base64url')}` }
    this.#files.set(stored.id, stored)
    if (this.#files.size > maxFiles) this.#files.delete(this.#files.keys().next().value as string)
    return stored
  }

  get (id: string): UploadedFile | undefined {
    return this.#files.get(id)
  }

  /** every file held, oldest first */
  list (): UploadedFile[] {
    return [...this.#files.values()]
  }

  clear (): void {
    this.#files.clear()
  }
}

function fileApiError (reply: FastifyReply, status: number, msg: string): FastifyReply {
  return reply.code(status).send({ success: false, code: status, msg })
}

function baseUrlOf (request: FastifyRequest): string {
  return `${request.protocol}://${request.host || '127.0.0.1'}`
}

/**
 * POST /api/v1/files/upload/stream (the files API, on the simulator's one
 * origin: the real one is files-api.evolink.ai) and GET /uploads/:file_id/:name
 * (the link, no key). Counted, faulted and keyed as the other upstream routes.
 */
export async function uploadRoutes (app: FastifyInstance, ctx: SimulatorContext): Promise<void> {
  await app.register(multipart, { limits: { files: 1, fileSize: maxFileBytes, fields: 8, fieldSize: 1024 } })

  app.post('/api/v1/files/upload/stream', { onRequest: gate(ctx, 'upload', true) }, async (request, reply) => {
    if (!request.isMultipart()) return await fileApiError(reply, 400, 'Content-Type must be multipart/form-data')
    const part = await request.file({ throwFileSizeLimit: false })
    if (part === undefined || part.fieldname !== 'file') {
      if (part !== undefined) part.file.resume()
      return await fileApiError(reply, 400, 'file is required')
    }
    const bytes = await part.toBuffer()
    if (part.file.truncated) return await fileApiError(reply, 413, `file exceeds ${maxFileBytes} bytes`)
    const at = ctx.now()
    const stored = ctx.uploads.add({ name: part.filename, mimeType: part.mimetype, bytes, at })
    const url = `${baseUrlOf(request)}/uploads/${stored.id}/${encodeURIComponent(stored.name)}`
    return {
      success: true,
      code: 200,
      msg: 'upload succeeded',
      data: {
        file_id: stored.id,
        file_name: stored.name,
        original_name: stored.name,
        file_size: bytes.length,
        mime_type: stored.mimeType,
        upload_path: 'uploads',
        file_url: url,
        download_url: url,
        upload_time: new Date(at).toISOString(),
        expires_at: new Date(at + fileLifetimeMs).toISOString()
      }
    }
  })

  app.get<{ Params: { file_id: string, name: string } }>('/uploads/:file_id/:name', { onRequest: gate(ctx, 'file', false) }, async (request, reply) => {
    const stored = ctx.uploads.get(request.params.file_id)
    if (stored === undefined || ctx.now() > stored.at + fileLifetimeMs) return await fileApiError(reply, 404, 'file not found or expired')
    return await reply.type(stored.mimeType).send(stored.bytes)
  })
}
