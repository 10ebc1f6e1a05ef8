// The generated Veo 3.1 Fast request schema, checked with TypeBox's compiler and
// with Ajv as Fastify runs it (the gateway disables Ajv's coercion, defaults and
// silent removal of unknown fields).
import Fastify from 'fastify'
import t from 'tap'
import { Compile } from 'typebox/compile'
import { VideoGenerationRequest } from '../../src/schemas/generated/veo-3.1-fast.ts'

const AJV_OPTIONS = { removeAdditional: false, coerceTypes: false, useDefaults: false } as const

interface AjvLikeError {
  keyword: string
  instancePath: string
  params?: Record<string, unknown>
}

// The seed's example body (text-to-video).
const seedExample: VideoGenerationRequest = {
  model: 'veo-3.1-fast-generate-preview',
  prompt: 'A cat playing piano'
}

// Every field, with the values added after the older docs page.
const fullBody: VideoGenerationRequest = {
  model: 'veo-3.1-fast-generate-preview',
  prompt: 'A lighthouse at dusk, waves crashing, cinematic',
  image_urls: [
    'https://example.com/a.jpg',
    'https://example.com/b.png',
    'https://example.com/c.webp'
  ],
  generation_type: 'REFERENCE',
  aspect_ratio: 'auto',
  generate_audio: true,
  duration: 8,
  n: 4,
  quality: '4k',
  seed: 4294967295,
  negative_prompt: 'blurry, low quality',
  person_generation: 'dont_allow',
  resize_mode: 'crop',
  callback_url: 'https://hooks.example.com/evolink'
}

const valid: Array<[string, unknown]> = [
  ['seed example', seedExample],
  ['every field (REFERENCE, 3 images, auto, 4k)', fullBody],
  ['FIRST&LAST with 2 images, 16:9, 1080p', {
    ...seedExample,
    generation_type: 'FIRST&LAST',
    image_urls: ['https://example.com/first.jpg', 'https://example.com/last.jpg'],
    aspect_ratio: '16:9',
    quality: '1080p',
    duration: 4,
    n: 1,
    seed: 1
  }],
  ['prompt of 2000 characters', { ...seedExample, prompt: 'x'.repeat(2000) }]
]

// [case, body, expected keyword, expected instancePath]
const invalid: Array<[string, unknown, string, string]> = [
  ['unknown field durations', { ...seedExample, durations: 8 }, 'additionalProperties', ''],
  ['duration 5', { ...seedExample, duration: 5 }, 'enum', '/duration'],
  ['duration "4" (string)', { ...seedExample, duration: '4' }, 'enum', '/duration'],
  ['n 0', { ...seedExample, n: 0 }, 'minimum', '/n'],
  ['n 5', { ...seedExample, n: 5 }, 'maximum', '/n'],
  ['n 1.5', { ...seedExample, n: 1.5 }, 'type', '/n'],
  ['quality 2160p', { ...seedExample, quality: '2160p' }, 'enum', '/quality'],
  ['seed 0', { ...seedExample, seed: 0 }, 'minimum', '/seed'],
  ['seed 4294967296', { ...seedExample, seed: 4294967296 }, 'maximum', '/seed'],
  ['4 image_urls', {
    ...seedExample,
    image_urls: ['https://e.com/1.jpg', 'https://e.com/2.jpg', 'https://e.com/3.jpg', 'https://e.com/4.jpg']
  }, 'maxItems', '/image_urls'],
  ['non-uri image url', { ...seedExample, image_urls: ['not a url'] }, 'format', '/image_urls/0'],
  ['non-uri callback_url', { ...seedExample, callback_url: 'hooks.example.com' }, 'format', '/callback_url'],
  ['missing prompt', { model: 'veo-3.1-fast-generate-preview' }, 'required', ''],
  ['missing model', { prompt: 'A cat playing piano' }, 'required', ''],
  ['empty prompt', { ...seedExample, prompt: '' }, 'minLength', '/prompt'],
  ['prompt of 2001 characters', { ...seedExample, prompt: 'x'.repeat(2001) }, 'maxLength', '/prompt'],
  ['generate_audio "true" (string)', { ...seedExample, generate_audio: 'true' }, 'type', '/generate_audio'],
  ['generation_type IMAGE', { ...seedExample, generation_type: 'IMAGE' }, 'enum', '/generation_type'],
  ['aspect_ratio 1:1', { ...seedExample, aspect_ratio: '1:1' }, 'enum', '/aspect_ratio'],
  ['person_generation allow_all', { ...seedExample, person_generation: 'allow_all' }, 'enum', '/person_generation'],
  ['resize_mode stretch', { ...seedExample, resize_mode: 'stretch' }, 'enum', '/resize_mode'],
  ['prompt as number', { ...seedExample, prompt: 42 }, 'type', '/prompt'],
  ['body not an object', ['A cat playing piano'], 'type', '']
]

function matches (errors: AjvLikeError[], keyword: string, instancePath: string): boolean {
  return errors.some(e => e.keyword === keyword && e.instancePath === instancePath)
}

t.test('schema shape', async t => {
  // TypeBox's TObject type does not carry the options; read them as plain JSON Schema.
  t.equal((VideoGenerationRequest as { additionalProperties?: unknown }).additionalProperties, false)
  t.same(VideoGenerationRequest.required, ['model', 'prompt'])
  t.same(Object.keys(VideoGenerationRequest.properties), [
    'model', 'prompt', 'image_urls', 'generation_type', 'aspect_ratio', 'generate_audio', 'duration',
    'n', 'quality', 'seed', 'negative_prompt', 'person_generation', 'resize_mode', 'callback_url'
  ])
  t.same(VideoGenerationRequest.properties.duration.enum, [4, 6, 8])
  t.notOk('type' in VideoGenerationRequest.properties.quality, 'enums are a plain `enum` keyword')
})

t.test('typebox/compile', async t => {
  const validator = Compile(VideoGenerationRequest)
  for (const [name, body] of valid) {
    t.ok(validator.Check(body), `accepts ${name}`)
  }
  for (const [name, body, keyword, path] of invalid) {
    const errors = validator.Errors(body) as AjvLikeError[]
    t.notOk(validator.Check(body), `rejects ${name}`)
    t.ok(matches(errors, keyword, path), `${name}: ${keyword} at "${path}"`, { errors })
  }
})

t.test('Ajv inside Fastify', async t => {
  const app = Fastify({ ajv: { customOptions: AJV_OPTIONS } })
  app.post('/v1/videos/generations', {
    schema: { body: VideoGenerationRequest },
    attachValidation: true
  }, async (request, reply) => {
    if (request.validationError) {
      return reply.code(400).send({ errors: request.validationError.validation })
    }
    return { body: request.body }
  })
  t.teardown(() => app.close())
  await app.ready()

  for (const [name, body] of valid) {
    const res = await app.inject({ method: 'POST', url: '/v1/videos/generations', payload: body as object })
    t.equal(res.statusCode, 200, `accepts ${name}`)
    t.same(res.json().body, body, `${name}: body reaches the handler unchanged (no defaults added)`)
  }
  for (const [name, body, keyword, path] of invalid) {
    const res = await app.inject({ method: 'POST', url: '/v1/videos/generations', payload: body as object })
    t.equal(res.statusCode, 400, `rejects ${name}`)
    const { errors } = res.json() as { errors: AjvLikeError[] }
    t.ok(matches(errors, keyword, path), `${name}: ${keyword} at "${path}"`, { errors })
  }

  const res = await app.inject({
    method: 'POST',
    url: '/v1/videos/generations',
    payload: { ...seedExample, durations: 8 }
  })
  t.match(res.json(), { errors: [{ params: { additionalProperty: 'durations' } }] }, 'names the unknown field')
})

// Why the gateway must set removeAdditional: false: with Fastify's default Ajv
// options an unknown field is silently dropped and the request passes.
t.test('Fastify default Ajv options would drop the typo instead of rejecting it', async t => {
  const app = Fastify()
  app.post('/', { schema: { body: VideoGenerationRequest } }, async request => request.body)
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/', payload: { ...seedExample, durations: 8 } })
  t.equal(res.statusCode, 200)
  t.notOk('durations' in res.json())
})
