import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { errorResponses } from '../../schemas/errors.ts'
import { TaskParams } from '../../schemas/generation.ts'
import { sendTaskContent } from '../../features/archive/content.ts'
import { tenantOf } from '../../features/tenants/auth.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'
import { upstreamIdOf } from './tasks.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** the route also takes a signed content link (`?tenant&expires&signature`) instead of a key */
    signedLinks?: boolean
  }
}

export const ContentQuery = Type.Object({
  index: Type.Optional(Type.String({ pattern: '^(?:0|[1-9][0-9]{0,2})$', description: 'Which video of a task created with `n` > 1 (0-based; default 0).' })),
  tenant: Type.Optional(Type.String({ maxLength: 64, description: 'Signed links only: the tenant the link was minted for.' })),
  expires: Type.Optional(Type.String({ pattern: '^[0-9]{1,12}$', description: 'Signed links only: the link\'s end, unix seconds.' })),
  signature: Type.Optional(Type.String({ maxLength: 64, description: 'Signed links only: HMAC over tenant, task, index and expiry.' })),
  token: Type.Optional(Type.String({ maxLength: 4096, description: 'A browser token with `read` (for `<video src>`, which cannot send Authorization). Never a tenant key.' }))
}, { additionalProperties: false })

const ContentHeaders = Type.Object({
  range: Type.Optional(Type.String({ maxLength: 256, description: 'One byte range (`bytes=0-1023`, `bytes=1024-`, `bytes=-512`): 206 with that part. Several ranges get the whole video.' })),
  'if-none-match': Type.Optional(Type.String({ description: 'The ETag (the video\'s SHA-256) of an earlier answer: 304 while the archived video is the same.' }))
})

const videoBody = { description: 'The video.', content: { 'video/mp4': { schema: { type: 'string', format: 'binary' } } } }

/** Whether a request presents a signed content link rather than a key or a token. */
export function presentsSignedLink (request: FastifyRequest): boolean {
  return request.routeOptions.config.signedLinks === true && typeof (request.query as { signature?: unknown }).signature === 'string'
}

const taskContentRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/tasks/:task_id/content', {
    config: { ...tenantRateLimit('read'), tokenOperation: 'read', tokenInQuery: true, signedLinks: true },
    schema: {
      tags: ['Tasks'],
      summary: 'Download a task\'s video',
      description: 'The video of a completed task: from the gateway\'s archive once it is archived (ETag = its SHA-256, `Range` answered with 206, `If-None-Match` with 304), streamed from the upstream\'s link before that, so that one URL works from the first second. ' +
        'Authenticated like a task read (tenant key, or a browser token with `read` as `?token=`), or by a signed link from a task read\'s `results` (what `<video src>` uses). Another tenant\'s task is 404.',
      operationId: 'getTaskContent',
      security: [{ tenantKey: [] }, {}],
      params: TaskParams,
      querystring: ContentQuery,
      headers: ContentHeaders,
      response: {
        200: videoBody,
        206: { ...videoBody, description: 'The requested byte range of the video.' },
        304: { type: 'null', description: 'Not modified: the ETag in If-None-Match is still current.' },
        ...errorResponses([400, 401, 403, 404, 409, 410, 416, 429, 502, 503, 504])
      }
    }
  }, async function getTaskContent (request, reply): Promise<FastifyReply> {
    const tenant = tenantOf(request)
    const upstreamId = upstreamIdOf(fastify, request, request.params.task_id)
    return await sendTaskContent(fastify, { request, reply, tenant, upstreamId, index: Number(request.query.index ?? '0') })
  })

  fastify.delete('/tasks/:task_id/content', {
    config: tenantRateLimit('read'),
    schema: {
      tags: ['Tasks'],
      summary: 'Delete a task\'s archived videos',
      description: 'Deletes the archived videos of the task now, for good (a user\'s right to erasure): the task is never archived again, its content answers 410, and its task read lists the upstream\'s links. 204 also when there was nothing to delete. Tenant keys only.',
      operationId: 'deleteTaskContent',
      security: [{ tenantKey: [] }],
      params: TaskParams,
      response: {
        204: { type: 'null', description: 'Deleted (or there was nothing to delete).' },
        ...errorResponses([400, 401, 403, 404, 429, 503])
      }
    }
  }, async function deleteTaskContent (request, reply) {
    const upstreamId = upstreamIdOf(fastify, request, request.params.task_id)
    await fastify.archive.erase(tenantOf(request).id, upstreamId)
    return await reply.code(204).send(null)
  })
}

export default taskContentRoute
