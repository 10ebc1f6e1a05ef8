import { gatewayError } from '../../errors/table.ts'
import { models, modelsById } from '../../models/index.ts'
import type { CreateGenerationBody } from '../../schemas/generation.ts'
import type { TaskIndexAttributes } from '../tasks/task-index.ts'
import type { CreateVideoBody } from './schemas.ts'

/** OpenAI model name → served model id (OPENAI_MODEL_ALIASES). */
export type ModelAliases = ReadonlyMap<string, string>

/** `sora-2=veo-…,sora-2-pro=veo-…` (the config pattern has checked the syntax); each target must be served. */
export function parseModelAliases (text: string): ModelAliases {
  const aliases = new Map<string, string>()
  for (const pair of text.split(',').filter((part) => part !== '')) {
    const [alias, target] = pair.split('=') as [string, string]
    if (!modelsById.has(target)) throw new Error(`OPENAI_MODEL_ALIASES maps "${alias}" to "${target}", which is not a served model (served: ${models.map((model) => model.id).join(', ')})`)
    aliases.set(alias, target)
  }
  return aliases
}

export const supportedSeconds = ['4', '6', '8'] as const

/** OpenAI `size` → Veo aspect ratio and quality. No nearest match: anything else is refused. */
export const sizeTable: Readonly<Record<string, { aspectRatio: '16:9' | '9:16', quality: '720p' | '1080p' | '4k' }>> = {
  '1280x720': { aspectRatio: '16:9', quality: '720p' },
  '720x1280': { aspectRatio: '9:16', quality: '720p' },
  '1920x1080': { aspectRatio: '16:9', quality: '1080p' },
  '1080x1920': { aspectRatio: '9:16', quality: '1080p' },
  '3840x2160': { aspectRatio: '16:9', quality: '4k' },
  '2160x3840': { aspectRatio: '9:16', quality: '4k' }
}

/** OpenAI's default size. */
export const defaultSize = '720x1280'

/** The OpenAI size of a native create (for videos created on the native route). */
export function sizeOf (attributes: Pick<TaskIndexAttributes, 'aspectRatio' | 'quality'>): string | null {
  const aspectRatio = attributes.aspectRatio ?? '16:9'
  const found = Object.entries(sizeTable).find(([, entry]) => entry.aspectRatio === aspectRatio && entry.quality === attributes.quality)
  return found === undefined ? null : found[0]
}

export interface MappedCreate {
  body: CreateGenerationBody
  indexAttributes: TaskIndexAttributes
  size: string
}

/**
 * An OpenAI create in the native body: the one create path then judges it
 * like any other (tenant caps, model rules, budgets). Refusals name the
 * OpenAI field (`param`) and what is supported.
 */
export function mapCreateVideo (input: CreateVideoBody, aliases: ModelAliases): MappedCreate {
  const named = input.model ?? 'sora-2'
  const model = modelsById.has(named) ? named : aliases.get(named)
  if (model === undefined) {
    const accepted = [...aliases.keys(), ...models.map((entry) => entry.id)]
    throw gatewayError('invalid_request', { args: [`Model "${named}" is not served by this gateway; use one of: ${accepted.join(', ')}.`], param: 'model' })
  }
  const seconds = input.seconds ?? '4'
  if (!(supportedSeconds as readonly string[]).includes(seconds)) {
    throw gatewayError('invalid_request', { args: [`"seconds" must be one of ${supportedSeconds.map((value) => `"${value}"`).join(', ')}; got "${seconds}".`], param: 'seconds' })
  }
  const size = input.size ?? defaultSize
  const mapped = sizeTable[size]
  if (mapped === undefined) {
    throw gatewayError('invalid_request', { args: [`"size" must be one of ${Object.keys(sizeTable).join(', ')}; got "${size}".`], param: 'size' })
  }
  const body: CreateGenerationBody = {
    model: model as CreateGenerationBody['model'],
    prompt: input.prompt,
    duration: Number(seconds) as 4 | 6 | 8,
    aspect_ratio: mapped.aspectRatio,
    quality: mapped.quality
  }
  if (input.input_reference !== undefined) {
    // One image: the model rules make it first-frame (FIRST&LAST), as Sora's input_reference was.
    body.image_urls = [input.input_reference.image_url]
  }
  return {
    body,
    size,
    indexAttributes: { model: named, prompt: input.prompt, seconds, aspectRatio: mapped.aspectRatio, quality: mapped.quality }
  }
}

/** A multipart form's fields as the JSON body: `input_reference[image_url]` → `{ input_reference: { image_url } }`. */
export function formFieldsToBody (fields: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(fields)) {
    const nested = /^([a-z_]+)\[([a-z_]+)\]$/.exec(key)
    if (nested === null) {
      body[key] = value
      continue
    }
    const parent = (body[nested[1]!] ??= {}) as Record<string, unknown>
    if (typeof parent === 'object') parent[nested[2]!] = value
  }
  return body
}
