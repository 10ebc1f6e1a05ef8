import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import fc from 'fast-check'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import {
  announceSeed, bodyLimitBytes, fuzzParameters, mutatedBodyTextArb, rawBodyArb, sendChecked, servedModels, specRequestSchema, startFuzzGateway,
  toJsonText, validBodyArb
} from './arbitraries.ts'

// Differential check: every body the gateway accepts (2xx) is valid against the
// upstream spec (openapi/models/veo-3.1-fast.yaml, VideoGenerationRequest, with
// `model` limited to the two served models), as judged by an Ajv 2020 instance
// built here from the YAML (not the gateway's compiled TypeBox/Fastify schema),
// and reaches the upstream unchanged. Conversely, a body that is valid against
// the spec and follows the README's cross-field rules is accepted (no over-rejection).

const ajv = new Ajv2020({ allErrors: true, strict: true })
addFormats.default(ajv)
const specSchema = {
  ...specRequestSchema,
  properties: { ...specRequestSchema.properties, model: { type: 'string', enum: [...servedModels] } }
}
const specValid = ajv.compile(specSchema)

/** The README's cross-field rules, written from the README (not from src/models/veo-rules.ts). */
function readmeRulesProblem (body: Record<string, unknown>): string | undefined {
  const images = Array.isArray(body.image_urls) ? body.image_urls.length : 0
  const mode = body.generation_type ?? (images === 0 ? 'TEXT' : 'FIRST&LAST')
  if (mode === 'TEXT' && images > 0) return 'TEXT takes no images'
  if (mode === 'FIRST&LAST' && (images < 1 || images > 2)) return 'FIRST&LAST takes 1-2 images'
  if (mode === 'REFERENCE') {
    if (images < 1 || images > 3) return 'REFERENCE takes 1-3 images'
    if (body.duration !== undefined && body.duration !== 8) return 'REFERENCE only 8 s'
    if (body.aspect_ratio !== undefined && body.aspect_ratio !== '16:9') return 'REFERENCE only 16:9'
  }
  if (body.resize_mode !== undefined && images === 0) return 'resize_mode only with images'
  if (body.callback_url !== undefined) return 'callback_url needs PUBLIC_BASE_URL (unset here)'
  return undefined
}

/** The body as the gateway's JSON parser sees it: UTF-8 with replacement characters, a leading BOM ignored (RFC 8259 allows it). */
function parsed (payload: string | Buffer): { ok: true, value: unknown } | { ok: false } {
  const text = (typeof payload === 'string' ? payload : payload.toString('utf8')).replace(/^\uFEFF/, '')
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch {
    return { ok: false }
  }
}

t.test('differential: accepted bodies are valid against the spec (independent Ajv 2020), and spec-valid rule-abiding bodies are accepted', async (t) => {
  announceSeed(t)
  const fx = await startFuzzGateway(t)
  const counts = { accepted: 0, rejected: 0, rejectedSpecInvalid: 0, rejectedByRules: 0, rejectedOther: 0 }

  const bodyArb: fc.Arbitrary<string | Buffer> = fc.oneof(
    { weight: 14, arbitrary: validBodyArb.map(toJsonText) },
    { weight: 3, arbitrary: mutatedBodyTextArb },
    { weight: 2, arbitrary: rawBodyArb }
  )

  await fc.assert(fc.asyncProperty(bodyArb, async (payload) => {
    const log = fx.upstream.simulator.calls.log
    const response = await sendChecked(fx, {
      method: 'POST',
      url: '/v1/videos/generations',
      headers: { authorization: fx.tenant.authorization, 'content-type': 'application/json' },
      payload
    })
    const accepted = response.statusCode >= 200 && response.statusCode < 300
    const body = parsed(payload)
    const valid = body.ok && specValid(body.value)
    const ruleProblem = valid ? readmeRulesProblem(body.value as Record<string, unknown>) : undefined
    const shown = typeof payload === 'string' ? JSON.stringify(payload).slice(0, 600) : `<bytes ${payload.toString('hex').slice(0, 600)}>`

    if (accepted) {
      counts.accepted += 1
      if (!body.ok) throw new Error(`accepted a body that is not JSON: ${shown}`)
      if (!valid) throw new Error(`accepted a body the spec rejects: ${ajv.errorsText(specValid.errors)}\n  body: ${shown}`)
      if (ruleProblem !== undefined) throw new Error(`accepted a body that breaks a README rule (${ruleProblem}): ${shown}`)
      const forwarded = log.at(-1)?.body
      if (!isDeepStrictEqual(forwarded, body.value)) throw new Error(`the upstream received ${JSON.stringify(forwarded)?.slice(0, 300)} for ${shown}`)
      return
    }
    counts.rejected += 1
    if (!valid) counts.rejectedSpecInvalid += 1
    else if (ruleProblem !== undefined) counts.rejectedByRules += 1
    else counts.rejectedOther += 1
    if (valid && ruleProblem === undefined && Buffer.byteLength(payload) <= bodyLimitBytes) {
      throw new Error(`rejected (${response.statusCode} ${response.body.slice(0, 300)}) a body the spec and the README rules allow: ${shown}`)
    }
  }), fuzzParameters(2600))

  t.comment(`accepted ${counts.accepted} (all valid against the spec and forwarded unchanged); rejected ${counts.rejected}: ` +
    `${counts.rejectedSpecInvalid} spec-invalid, ${counts.rejectedByRules} breaking a cross-field rule, ${counts.rejectedOther} other (over the body limit)`)
  t.ok(counts.accepted >= counts.rejected, 'most generated bodies are accepted, so the check means something')
})
