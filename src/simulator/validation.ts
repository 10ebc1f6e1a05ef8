import { isIP } from 'node:net'
import type { TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import type { TLocalizedValidationError } from 'typebox/error'
import { invalidRequest, modelAccessDenied, type UpstreamErrorBody } from './errors.ts'

export interface Rejection {
  status: 400 | 403
  body: UpstreamErrorBody
}

export type CreateBody = Record<string, unknown> & { model: string, prompt: string }

/** `/image_urls/0` → { param: 'image_urls', path: 'image_urls[0]' } */
function fieldOf (instancePath: string): { param: string, path: string } {
  const [first = '', ...rest] = instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
  return { param: first, path: first + rest.map((s) => /^\d+$/.test(s) ? `[${s}]` : `.${s}`).join('') }
}

/** Allowed values of a property given as an enum or a union of constants, if it is one. */
function allowedValues (schema: TSchema | undefined): unknown[] | undefined {
  if (schema === undefined) return undefined
  const s = schema as { enum?: unknown[], const?: unknown, anyOf?: TSchema[] }
  if (Array.isArray(s.enum)) return s.enum
  if ('const' in s) return [s.const]
  if (Array.isArray(s.anyOf)) {
    const values = s.anyOf.map(allowedValues)
    if (values.every((v) => v !== undefined)) return values.flat()
  }
  return undefined
}

function describe (errors: TLocalizedValidationError[], properties: Record<string, TSchema>): Rejection {
  // Missing and unknown parameters first, then the first error on a named field.
  const required = errors.find((e) => e.keyword === 'required')
  if (required !== undefined && required.keyword === 'required') {
    const param = required.params.requiredProperties[0] ?? ''
    return { status: 400, body: invalidRequest(`Missing required parameter: ${param}`, param) }
  }
  const unknown = errors.find((e) => e.keyword === 'additionalProperties')
  if (unknown !== undefined && unknown.keyword === 'additionalProperties') {
    const param = unknown.params.additionalProperties[0] ?? ''
    return { status: 400, body: invalidRequest(`Unknown parameter: ${param}`, param) }
  }
  const error = errors.find((e) => e.instancePath !== '' && e.keyword !== 'boolean') ?? errors[0]!
  if (error.instancePath === '') return { status: 400, body: invalidRequest(`Invalid request body: ${error.message}`) }
  const { param, path } = fieldOf(error.instancePath)
  const allowed = path === param ? allowedValues(properties[param]) : undefined
  const why = allowed !== undefined && ['enum', 'const', 'anyOf'].includes(error.keyword)
    ? `must be one of ${allowed.map((v) => typeof v === 'string' ? v : JSON.stringify(v)).join(', ')}`
    : error.message
  return { status: 400, body: invalidRequest(`Invalid parameter ${path}: ${why}`, param) }
}

const PRIVATE_V4 = [/^127\./, /^10\./, /^172\.(1[6-9]|2\d|3[01])\./, /^192\.168\./, /^169\.254\./, /^0\./]

function callbackUrlProblem (value: string, allowPrivate: boolean): string | undefined {
  if (value.length > 2048) return 'must be at most 2048 characters'
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'must be a valid URL'
  }
  if (allowPrivate) return url.protocol === 'https:' || url.protocol === 'http:' ? undefined : 'must use HTTPS'
  if (url.protocol !== 'https:') return 'must use HTTPS'
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase()
  const v6 = isIP(host) === 6
  if (host === 'localhost' || host.endsWith('.localhost') ||
      (isIP(host) === 4 && PRIVATE_V4.some((re) => re.test(host))) ||
      (v6 && (host === '::1' || host === '::' || /^f[cd]/.test(host) || /^fe80:/.test(host) || host.startsWith('::ffff:')))) {
    return 'must not point to a private or loopback address'
  }
  return undefined
}

/** Rules the upstream documents beyond the schema: image counts per generation type, callback URL. */
function semanticProblem (body: CreateBody, allowPrivateCallbackUrls: boolean): Rejection | undefined {
  const images = Array.isArray(body.image_urls) ? body.image_urls.length : 0
  const type = body.generation_type
  if (type === 'FIRST&LAST' && (images < 1 || images > 2)) {
    return { status: 400, body: invalidRequest('Invalid parameter image_urls: generation_type FIRST&LAST requires 1 to 2 images', 'image_urls') }
  }
  if (type === 'REFERENCE' && images < 1) {
    return { status: 400, body: invalidRequest('Invalid parameter image_urls: generation_type REFERENCE requires 1 to 3 images', 'image_urls') }
  }
  if (type === undefined && images > 2) {
    return { status: 400, body: invalidRequest('Invalid parameter image_urls: more than 2 images require generation_type REFERENCE', 'image_urls') }
  }
  if (typeof body.callback_url === 'string') {
    const problem = callbackUrlProblem(body.callback_url, allowPrivateCallbackUrls)
    if (problem !== undefined) return { status: 400, body: invalidRequest(`Invalid parameter callback_url: ${problem}`, 'callback_url') }
  }
  return undefined
}

export type CreateBodyValidator = (body: unknown) => { ok: true, body: CreateBody } | { ok: false, rejection: Rejection }

export interface CreateValidatorOptions {
  models: readonly string[]
  deniedModels: readonly string[]
  /** see SimulatorOptions.allowPrivateCallbackUrls */
  allowPrivateCallbackUrls?: boolean
}

/**
 * Compiles the request schema once and returns a checker for create bodies:
 * the body, or the upstream-style rejection (400 invalid_request naming the
 * field in `message` and `param`; 403 model_access_denied).
 *
 * The model is checked against the simulator's own lists (so a sibling model
 * with the same schema is accepted even if the schema pins `model`).
 */
export function createBodyValidator (schema: TSchema, options: CreateValidatorOptions): CreateBodyValidator {
  const validator = Compile(schema)
  const properties = ((schema as { properties?: Record<string, TSchema> }).properties) ?? {}
  const schemaModels = allowedValues(properties.model)
  const stand = schemaModels !== undefined && typeof schemaModels[0] === 'string' ? schemaModels[0] : undefined

  return (body) => {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return { ok: false, rejection: { status: 400, body: invalidRequest('Request body must be a JSON object') } }
    }
    const record = body as Record<string, unknown>
    const model = record.model
    // A model the simulator knows (served or denied) passes the schema's own model rule.
    const known = typeof model === 'string' && (options.models.includes(model) || options.deniedModels.includes(model))
    const checked = known && stand !== undefined
      ? { ...record, model: stand }
      : record
    if (!validator.Check(checked)) {
      const errors = validator.Errors(checked)
      if (errors.length > 0) return { ok: false, rejection: describe(errors, properties) }
    }
    const valid = record as CreateBody
    if (options.deniedModels.includes(valid.model)) {
      return { ok: false, rejection: { status: 403, body: modelAccessDenied(valid.model) } }
    }
    if (!options.models.includes(valid.model)) {
      return { ok: false, rejection: { status: 400, body: invalidRequest(`Invalid parameter model: unsupported model ${valid.model}`, 'model') } }
    }
    const problem = semanticProblem(valid, options.allowPrivateCallbackUrls === true)
    if (problem !== undefined) return { ok: false, rejection: problem }
    return { ok: true, body: valid }
  }
}
