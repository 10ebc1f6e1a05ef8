import type { TObject } from 'typebox'
import type { CreateGenerationBody } from '../schemas/generation.ts'
import { VideoGenerationRequest as Veo31Request } from '../schemas/generated/veo-3.1-fast.ts'
import { checkVeoRules } from './veo-rules.ts'

/**
 * The models the gateway serves. The plumbing (routes, upstream client, task
 * ids) knows nothing of any model: a model is its request schema (generated
 * from its file in openapi/models/) plus a line here, with the cross-field
 * rules JSON Schema cannot say. `veo-3.1-generate-preview` shares Fast's schema.
 */
export interface ModelEntry {
  id: string
  requestSchema: TObject
  /** throws an invalid_request gateway error naming the field */
  checkRules: (body: never) => void
}

export const models: readonly ModelEntry[] = [
  { id: 'veo-3.1-fast-generate-preview', requestSchema: Veo31Request, checkRules: checkVeoRules },
  { id: 'veo-3.1-generate-preview', requestSchema: Veo31Request, checkRules: checkVeoRules }
]

export const modelsById: ReadonlyMap<string, ModelEntry> = new Map(models.map((model) => [model.id, model]))

/** A create as the upstream will make it: the fields it defaults, filled in. */
export interface EffectiveRequest {
  n: number
  quality: string
  /** seconds of each video */
  duration: number
}

/**
 * The upstream's defaults, in one place: what tenant caps, token grants and the
 * charge estimate judge when a field is not sent. One video, 720p, 4 seconds;
 * REFERENCE videos always last 8.
 */
export function effectiveRequest (body: Pick<CreateGenerationBody, 'n' | 'quality' | 'duration' | 'generation_type'>): EffectiveRequest {
  return {
    n: body.n ?? 1,
    quality: body.quality ?? '720p',
    duration: body.generation_type === 'REFERENCE' ? 8 : (body.duration ?? 4)
  }
}
