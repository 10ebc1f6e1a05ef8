import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { hash } from 'node:crypto'
import multipart from '@fastify/multipart'
import { gatewayError } from '../../errors/table.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { IdempotencyHeaders } from '../../schemas/idempotency.ts'
import { createTask } from '../tasks/create.ts'
import type { TaskIndexEntry } from '../tasks/task-index.ts'
import type { TaskSnapshot } from '../tasks/snapshot.ts'
import { waitForProgress } from '../tasks/wait.ts'
import { tenantOf } from '../tenants/auth.ts'
import { tenantRateLimit } from '../tenants/rate-limit.ts'
import { sendTaskContent } from '../archive/content.ts'
import { formFieldsToBody, mapCreateVideo, type ModelAliases } from './mapping.ts'
import { presentVideo } from './presenter.ts'
import { hostUploadedImage, receivedFileOf, receiveFile, uploadField } from './upload.ts'
import { ContentQuery, CreateVideoBody, DeletedVideo, ListVideosQuery, openaiTag, RetrieveVideoQuery, Video, VideoList, VideoParams } from './schemas.ts'

export interface OpenaiRoutesOptions {
  aliases: ModelAliases
  /** `openai-poll-after-ms` of a running video: how long the status cache reuses a status (TASK_STATUS_TTL_MS) */
  pollAfterMs: number
  /** a multipart form's text fields together (BODY_LIMIT_BYTES) */
  bodyLimitBytes: number
  /** the largest `input_reference` file read (IMAGE_UPLOAD_MAX_BYTES) */
  imageUploadMaxBytes: number
}

/** every route here says so in its config: metrics count it (observability/metrics.ts) */
const dialect = 'openai' as const
const defaultPageSize = 20

/** The index entry and upstream id of a video of this tenant; anything else (another tenant's, forged, deleted) is 404. */
async function videoOf (fastify: FastifyInstance, request: FastifyRequest, videoId: string): Promise<{ entry: TaskIndexEntry, upstreamId: string }> {
  const tenant = tenantOf(request)
  const upstreamId = fastify.taskIds.unscope(tenant.id, videoId)
  const entry = upstreamId === null ? null : await fastify.taskIndex.get(tenant.id, videoId)
  if (upstreamId === null || entry === null) throw gatewayError('not_found', { args: [`Video "${videoId}" not found.`], param: 'video_id' })
  return { entry, upstreamId }
}

/** A read that every other read path makes too: the sighting frees the concurrency slot of a finished task. */
async function readVideo (fastify: FastifyInstance, request: FastifyRequest, upstreamId: string): Promise<TaskSnapshot> {
  const snapshot = await fastify.taskStatus.read(upstreamId, request)
  await fastify.taskStatus.observe({ tenantId: tenantOf(request).id, upstreamTaskId: upstreamId, snapshot })
  return snapshot
}

function refuseOperation (name: string) {
  return async function refused (): Promise<never> {
    throw gatewayError('unsupported_video_operation', { args: [name] })
  }
}

/** An uploaded file is part of what a create is: the same Idempotency-Key with another image is another request (422). */
function createIdentity (request: FastifyRequest): unknown {
  const file = receivedFileOf(request)
  return file?.bytes == null ? request.body : { body: request.body, [uploadField]: hash('sha256', file.bytes, 'hex') }
}

/** The create (and the refused creates), in their own scope: only they parse multipart/form-data. */
const createRoute: FastifyPluginAsyncTypebox<OpenaiRoutesOptions> = async (fastify, options) => {
  await fastify.register(multipart, {
    attachFieldsToBody: 'keyValues',
    // fileSize: busboy stops there, so one upload never holds more than the image limit.
    limits: { fields: 16, fieldSize: options.bodyLimitBytes, files: 1, parts: 17, fileSize: options.imageUploadMaxBytes, headerPairs: 100 },
    async onFile (part) {
      await receiveFile(this, part, options.imageUploadMaxBytes)
    }
  })

  fastify.post('/videos', {
    config: { ...tenantRateLimit('create', { inAdmission: true }), idempotency: true, idempotencyIdentity: createIdentity, tokenOperation: 'create', dialect },
    // After @fastify/multipart's own preValidation hook: the form becomes the JSON body the schema judges.
    preValidation: async (request) => {
      if (!request.isMultipart()) return
      const file = receivedFileOf(request)
      if (file !== undefined && file.bytes === null) {
        throw gatewayError('invalid_request', { args: [`A file is accepted only as "${uploadField}"; got one as "${file.field}".`], param: file.field })
      }
      // 'keyValues' puts the file's bytes under its field name too: the file is kept beside the body, not in it.
      const fields = { ...(request.body ?? {}) } as Record<string, unknown>
      if (file !== undefined) delete fields[file.field]
      const body = formFieldsToBody(fields)
      if (file !== undefined && body[uploadField] !== undefined) {
        throw gatewayError('invalid_request', { args: [`Send "${uploadField}" once: a file or input_reference[image_url], not both.`], param: uploadField })
      }
      request.body = body as CreateVideoBody
    },
    schema: {
      tags: [openaiTag],
      summary: 'Create a video (OpenAI Videos API)',
      description: 'OpenAI\'s create, as JSON or multipart/form-data, mapped to the native create (`model` through OPENAI_MODEL_ALIASES, `seconds` → `duration`, `size` → `aspect_ratio` + `quality`, `input_reference.image_url` → `image_urls`) and admitted on the one create path: the tenant\'s caps, rate limits, budgets, concurrency and `Idempotency-Key` apply exactly as on `POST /v1/videos/generations`. In a form, `input_reference` may be an image file (JPEG, PNG or WebP, at most IMAGE_UPLOAD_MAX_BYTES): the gateway hosts it on the video provider\'s file API (EVOLINK_FILES_URL) and sends its link as the first frame.',
      operationId: 'openaiCreateVideo',
      security: [{ tenantKey: [] }],
      consumes: ['application/json', 'multipart/form-data'],
      headers: IdempotencyHeaders,
      body: CreateVideoBody,
      response: {
        200: Video,
        ...errorResponses([400, 401, 403, 409, 413, 415, 422, 429, 500, 502, 503, 504])
      }
    }
  }, async function createVideo (request) {
    const mapped = mapCreateVideo(request.body, options.aliases)
    const file = receivedFileOf(request)
    // Hosted after the mapping has judged the fields (a refused seconds or size uploads nothing).
    if (file?.bytes != null) mapped.body.image_urls = [await hostUploadedImage(fastify, request, { ...file, bytes: file.bytes })]
    const task = await createTask(fastify, { request, body: mapped.body, indexAttributes: mapped.indexAttributes })
    return presentVideo({ id: task.id, attributes: mapped.indexAttributes }, { task, etag: '', terminal: false, fetchedAt: 0 })
  })

  // Here, beside the create: the SDK sends some of them as forms, which must get this 400, not a 415.
  const refusedOperations = [
    ['/videos/:video_id/remix', 'Remixing a video (POST /v1/videos/{video_id}/remix)', 'openaiRemixVideo'],
    ['/videos/edits', 'Editing a video (POST /v1/videos/edits)', 'openaiEditVideo'],
    ['/videos/extensions', 'Extending a video (POST /v1/videos/extensions)', 'openaiExtendVideo'],
    ['/videos/characters', 'Video characters (POST /v1/videos/characters)', 'openaiCreateVideoCharacter']
  ] as const
  for (const [url, name, operationId] of refusedOperations) {
    fastify.post(url, {
      config: { ...tenantRateLimit('create'), dialect },
      schema: {
        tags: [openaiTag],
        summary: `${name}: not supported`,
        description: 'Answers 400 `unsupported_video_operation` naming what the gateway supports (the video provider has no such operation).',
        operationId,
        security: [{ tenantKey: [] }],
        response: errorResponses([400, 401, 429])
      }
    }, refuseOperation(name))
  }
}

/**
 * The OpenAI Videos dialect: OpenAI's shapes over the gateway's own features
 * (the one create path, the status cache, the task index). Registered inside
 * the v1 scope, so tenant authentication and request counting apply as to
 * every v1 route.
 */
const openaiRoutes: FastifyPluginAsyncTypebox<OpenaiRoutesOptions> = async (fastify, options) => {
  await fastify.register(createRoute, options)

  fastify.get('/videos/:video_id', {
    config: { ...tenantRateLimit('read'), tokenOperation: 'read', dialect },
    schema: {
      tags: [openaiTag],
      summary: 'Retrieve a video (OpenAI Videos API)',
      description: 'The video object, from the status cache (reads are coalesced as on `GET /v1/tasks/{id}`). A running video\'s answer carries `openai-poll-after-ms`. `?wait=N` long-polls as on the native route.',
      operationId: 'openaiRetrieveVideo',
      security: [{ tenantKey: [] }],
      params: VideoParams,
      querystring: RetrieveVideoQuery,
      response: { 200: Video, ...errorResponses([400, 401, 404, 429, 500, 502, 503, 504]) }
    }
  }, async function retrieveVideo (request, reply) {
    const { entry, upstreamId } = await videoOf(fastify, request, request.params.video_id)
    const first = await fastify.taskStatus.read(upstreamId, request)
    const waitMs = request.query.wait === undefined ? 0 : Number(request.query.wait) * 1000
    const snapshot = await waitForProgress({ taskStatus: fastify.taskStatus, upstreamId, first, waitMs, reply })
    await fastify.taskStatus.observe({ tenantId: tenantOf(request).id, upstreamTaskId: upstreamId, snapshot })
    if (!snapshot.terminal) reply.header('openai-poll-after-ms', String(options.pollAfterMs))
    return presentVideo(entry, snapshot)
  })

  fastify.get('/videos', {
    config: { ...tenantRateLimit('read'), tokenOperation: 'read', dialect },
    schema: {
      tags: [openaiTag],
      summary: 'List videos (OpenAI Videos API)',
      description: 'The tenant\'s videos (created on either dialect), newest first by default, with OpenAI\'s cursor paging (`after`, `limit` ≤ 100, `order`). The index keeps TASK_INDEX_MAX_PER_TENANT videos per tenant for 30 days; without REDIS_URL it is per instance and a restart empties it.',
      operationId: 'openaiListVideos',
      security: [{ tenantKey: [] }],
      querystring: ListVideosQuery,
      response: { 200: VideoList, ...errorResponses([400, 401, 429, 500, 502, 503, 504]) }
    }
  }, async function listVideos (request) {
    const tenant = tenantOf(request)
    const { after, order = 'desc' } = request.query
    const limit = request.query.limit === undefined ? defaultPageSize : Number(request.query.limit)
    const page = await fastify.taskIndex.list(tenant.id, { after, limit, order })
    if (page === null) throw gatewayError('invalid_request', { args: [`"after" names no video of this tenant: "${after ?? ''}".`], param: 'after' })
    const data = await Promise.all(page.entries.map(async (entry) => {
      const upstreamId = fastify.taskIds.unscope(tenant.id, entry.id)
      if (upstreamId === null) throw new Error('an indexed id does not verify for its tenant')
      return presentVideo(entry, await readVideo(fastify, request, upstreamId))
    }))
    return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: page.hasMore }
  })

  fastify.delete('/videos/:video_id', {
    config: { ...tenantRateLimit('create'), dialect },
    schema: {
      tags: [openaiTag],
      summary: 'Delete a video (OpenAI Videos API)',
      description: 'Removes the video from the tenant\'s index (it no longer lists or reads on this dialect) and erases what the gateway keeps of it. Idempotent: deleting again answers the same. Another tenant\'s id is 404. Not with browser tokens.',
      operationId: 'openaiDeleteVideo',
      security: [{ tenantKey: [] }],
      params: VideoParams,
      response: { 200: DeletedVideo, ...errorResponses([400, 401, 403, 404, 429, 500, 503]) }
    }
  }, async function deleteVideo (request) {
    const tenant = tenantOf(request)
    const videoId = request.params.video_id
    const upstreamId = fastify.taskIds.unscope(tenant.id, videoId)
    if (upstreamId === null) throw gatewayError('not_found', { args: [`Video "${videoId}" not found.`], param: 'video_id' })
    await fastify.taskIndex.remove({ tenantId: tenant.id, taskId: videoId, upstreamTaskId: upstreamId })
    return { id: videoId, object: 'video.deleted' as const, deleted: true as const }
  })

  fastify.get('/videos/:video_id/content', {
    config: { ...tenantRateLimit('read'), tokenOperation: 'read', dialect },
    schema: {
      tags: [openaiTag],
      summary: 'Download a video\'s content (OpenAI Videos API)',
      description: 'The MP4 of a completed video (its first result): the archived file once archived (`Range` → 206, ETag = SHA-256, `If-None-Match` → 304), streamed from the upstream before that. `variant=thumbnail` and `spritesheet` answer 400 `unsupported_variant`.',
      operationId: 'openaiDownloadVideoContent',
      security: [{ tenantKey: [] }],
      params: VideoParams,
      querystring: ContentQuery,
      produces: ['video/mp4'],
      response: {
        200: { description: 'The MP4.', content: { 'video/mp4': { schema: { type: 'string', format: 'binary' } } } },
        ...errorResponses([400, 401, 404, 409, 429, 500, 502, 503, 504])
      }
    }
  }, async function downloadContent (request, reply) {
    const variant = request.query.variant ?? 'video'
    if (variant === 'thumbnail' || variant === 'spritesheet') throw gatewayError('unsupported_variant', { args: [variant], param: 'variant' })
    if (variant !== 'video') throw gatewayError('invalid_request', { args: [`"variant" must be one of video, thumbnail, spritesheet; got "${variant}".`], param: 'variant' })
    const { upstreamId } = await videoOf(fastify, request, request.params.video_id)
    const snapshot = await readVideo(fastify, request, upstreamId)
    if (snapshot.task.status !== 'completed') throw gatewayError('video_not_ready', { args: [request.params.video_id, String(snapshot.task.status)] })
    // The archive's file once archived (Range, ETag, 304), the upstream's link before: the native route's answer.
    return await sendTaskContent(fastify, { request, reply, tenant: tenantOf(request), upstreamId, index: 0 })
  })
}

export default openaiRoutes
