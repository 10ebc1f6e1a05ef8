import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorResponses } from '../schemas/errors.ts'

export interface CallbackRoutesOptions {
  /** the largest callback body read (it is not used: the task is read back instead) */
  bodyLimitBytes: number
}

/**
 * Where the upstream calls back when a task ends: outside `/v1`, no tenant
 * key, the per-task token in the path is the credential. The body is not
 * trusted (the upstream documents no signature), so it is not even parsed: the
 * task is read back from the upstream, and only a confirmed end is relayed.
 * The answer comes once the delivery is queued (durably, with Redis); the
 * delivery itself happens after.
 */
const callbackRoutes: FastifyPluginAsyncTypebox<CallbackRoutesOptions> = async (fastify, options) => {
  // Encapsulated here: any content type, body read up to the limit and dropped.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: options.bodyLimitBytes }, (_request, _body, done) => { done(null, null) })

  fastify.post('/callbacks/evolink/:token', {
    bodyLimit: options.bodyLimitBytes,
    schema: {
      hide: true,
      params: Type.Object({ token: Type.String() }),
      response: {
        200: Type.Object({ received: Type.Boolean() }),
        ...errorResponses([404, 409, 413, 500, 502, 503, 504])
      }
    }
  }, async function receiveCallback (request) {
    await fastify.webhooks.receiveCallback(request.params.token)
    return { received: true }
  })
}

export default callbackRoutes
