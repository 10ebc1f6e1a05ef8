import { Type, type Static } from 'typebox'

export const DeliveryAttemptView = Type.Object({
  attempt: Type.Integer({ minimum: 1, description: 'Number of this attempt, counting every attempt of the delivery (redeliveries included).' }),
  at: Type.String({ format: 'date-time', description: 'When the attempt began.' }),
  response_status: Type.Union([Type.Integer(), Type.Null()], { description: 'The HTTP status your endpoint answered, or null when none came (see `error`).' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'Why no status came: timed out, connection failed, destination refused (SSRF rules)…' }),
  duration_ms: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })

export const DeliveryView = Type.Object({
  id: Type.String({ description: 'The delivery id, sent as the `webhook-id` header on every attempt (the same across retries: de-duplicate on it).' }),
  task_id: Type.String({ description: 'The tenant-scoped task id.' }),
  url: Type.String({ description: 'Your `callback_url`.' }),
  event_type: Type.String({ description: 'The `type` of the payload: `video.generation.task.completed`, `video.generation.task.failed`, …' }),
  status: Type.Enum(['pending', 'succeeded', 'failed'], { description: '`pending`: not delivered yet (`next_attempt_at` says when it is tried again); `succeeded`: your endpoint answered 2xx; `failed`: attempts exhausted or your endpoint answered 410.' }),
  next_attempt_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  failure_reason: Type.Union([Type.String(), Type.Null()]),
  attempts: Type.Array(DeliveryAttemptView, { description: 'The most recent attempts, oldest first (at most 50).' }),
  created_at: Type.String({ format: 'date-time' })
}, { additionalProperties: false })

export const DeliveryList = Type.Object({
  data: Type.Array(DeliveryView)
}, { additionalProperties: false })

export const DeliveriesQuery = Type.Object({
  task_id: Type.String({ minLength: 1, maxLength: 512, description: 'The task id the gateway returned on create (tenant-scoped).' })
}, { additionalProperties: false })

export const DeliveryParams = Type.Object({
  delivery_id: Type.String({ minLength: 1, maxLength: 128, description: 'A delivery id (`webhook-id`).' })
})

export type DeliveryView = Static<typeof DeliveryView>
