import { Type, type Static } from 'typebox'
import { models } from '../models/index.ts'
import { VideoGenerationRequest } from './generated/veo-3.1-fast.ts'

/**
 * The body of POST /v1/videos/generations: the models' request schema with
 * `model` narrowed to the models the gateway serves. All models served today
 * share one schema; a model with another schema would turn this into a union
 * discriminated on `model`.
 */
const distinctSchemas = new Set(models.map((model) => model.requestSchema))
if (distinctSchemas.size !== 1) throw new Error('models with different request schemas need a discriminated union here')

export const CreateGenerationBody = Type.Object({
  ...VideoGenerationRequest.properties,
  model: Type.Enum(models.map((model) => model.id), {
    description: 'The model; one of the models this gateway serves (a tenant may be limited to some of them).',
    default: 'veo-3.1-fast-generate-preview'
  })
}, {
  additionalProperties: false,
  description: (VideoGenerationRequest as { description?: string }).description,
  // Kept from the model's schema: without them Swagger UI prefills "Try it out" from every
  // property (image_urls with generation_type TEXT), which the gateway rightly refuses.
  examples: (VideoGenerationRequest as { examples?: unknown[] }).examples
})

export type CreateGenerationBody = Static<typeof CreateGenerationBody>

export const TaskParams = Type.Object({
  task_id: Type.String({ minLength: 1, maxLength: 512, description: 'The task id the gateway returned on create (tenant-scoped).' })
})

export const TaskQuery = Type.Object({
  // A string: query values are not coerced (app.ts), and this keeps "5.5" or "1e1" out.
  wait: Type.Optional(Type.String({
    pattern: '^(?:[0-9]|[1-5][0-9]|60)$',
    description: 'Long-poll: wait up to this many seconds (0–60) for the status or progress to change, then answer the current state. Without it, the answer is immediate.'
  }))
})

export const TaskHeaders = Type.Object({
  'if-none-match': Type.Optional(Type.String({ description: 'An ETag from an earlier answer: 304 Not Modified while the task is unchanged.' }))
})

export const TaskEventsQuery = Type.Object({
  token: Type.Optional(Type.String({ maxLength: 4096, description: 'A browser token (POST /v1/tokens), for EventSource, which cannot send an Authorization header. Never a tenant key.' }))
})

export const TaskEventsHeaders = Type.Object({
  'last-event-id': Type.Optional(Type.String({ description: 'Sent by EventSource on reconnect: if it names the final state, the answer is 204 and the browser stops reconnecting.' }))
})
