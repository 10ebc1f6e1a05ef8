import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponses } from '../../schemas/errors.ts'
import { DeliveriesQuery, DeliveryList, DeliveryParams, DeliveryView } from '../../schemas/webhooks.ts'
import type { Delivery } from '../../features/webhooks/store.ts'
import { tenantOf } from '../../features/tenants/auth.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'
import { upstreamIdOf } from './tasks.ts'

const iso = (ms: number): string => new Date(ms).toISOString()

/** A delivery as its tenant sees it (no payload: the task itself is one GET away). */
export function presentDelivery (delivery: Delivery): DeliveryView {
  return {
    id: delivery.id,
    task_id: delivery.taskId,
    url: delivery.url,
    event_type: delivery.eventType,
    status: delivery.status,
    next_attempt_at: delivery.nextAttemptAt === null ? null : iso(delivery.nextAttemptAt),
    failure_reason: delivery.failureReason,
    attempts: delivery.attempts.map((attempt) => ({
      attempt: attempt.attempt,
      at: iso(attempt.at),
      response_status: attempt.statusCode,
      error: attempt.error,
      duration_ms: attempt.durationMs
    })),
    created_at: iso(delivery.createdAt)
  }
}

const webhooksRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/webhooks/deliveries', {
    config: tenantRateLimit('read'),
    schema: {
      tags: ['Webhooks'],
      summary: 'List the webhook deliveries of a task',
      description: 'The deliveries to your `callback_url` for one of your tasks, with every attempt (status, response code, error) and the next retry. Another tenant\'s task id, a forged id and an unknown id all answer 404; a task without deliveries (not finished yet, or created without `callback_url`) answers an empty list.',
      operationId: 'listWebhookDeliveries',
      security: [{ tenantKey: [] }],
      querystring: DeliveriesQuery,
      response: {
        200: DeliveryList,
        ...errorResponses([400, 401, 404, 429, 500, 503])
      }
    }
  }, async function listDeliveries (request) {
    const upstreamId = upstreamIdOf(fastify, request, request.query.task_id)
    const deliveries = await fastify.webhooks.deliveriesOfTask(tenantOf(request).id, upstreamId)
    return { data: deliveries.map(presentDelivery) }
  })

  fastify.post('/webhooks/deliveries/:delivery_id/redeliver', {
    config: tenantRateLimit('create'),
    schema: {
      tags: ['Webhooks'],
      summary: 'Send a webhook delivery again',
      description: 'Queues the delivery for an attempt now, with the same `webhook-id` and payload, and a fresh retry schedule (whether it had succeeded, failed or is still retrying). Another tenant\'s delivery answers 404.',
      operationId: 'redeliverWebhook',
      security: [{ tenantKey: [] }],
      params: DeliveryParams,
      response: {
        202: DeliveryView,
        ...errorResponses([400, 401, 404, 429, 500, 503])
      }
    }
  }, async function redeliver (request, reply) {
    const delivery = await fastify.webhooks.redeliver(tenantOf(request).id, request.params.delivery_id)
    return await reply.code(202).send(presentDelivery(delivery))
  })
}

export default webhooksRoute
