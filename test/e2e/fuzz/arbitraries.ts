/**
 * Shared pieces of the property-based (fuzz) tests in test/e2e/fuzz/: the seed, a
 * gateway in front of a real test simulator, the one property every answer
 * must satisfy, and the arbitraries (bodies, headers, paths). Not a test file.
 *
 * Reproduce a failure with the seed it prints: FUZZ_SEED=<seed> npx tap test/e2e/fuzz/<file>.test.ts
 * (fast-check's report also gives the `path` of the counterexample).
 * FUZZ_SCALE=<factor> multiplies every property's number of runs (default 1).
 */
import { mkdirSync, readFileSync } from 'node:fs'
import fc from 'fast-check'
import { parse as parseYaml } from 'yaml'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildTestApp, makeTenant, type HasTeardown, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { leakCaptureDir } from '../../helpers/leak-capture.ts'
import type { StartedSimulator } from '../../../src/simulator/start.ts'

// ---------------------------------------------------------------------------
// Seed and run counts

function readSeed (): number {
  const raw = process.env.FUZZ_SEED
  if (raw === undefined || raw.trim() === '') return Date.now() % 0x7fffffff
  const seed = Number(raw)
  if (!Number.isSafeInteger(seed)) throw new Error(`FUZZ_SEED must be an integer, got ${JSON.stringify(raw)}`)
  return seed
}

function readScale (): number {
  const raw = process.env.FUZZ_SCALE
  if (raw === undefined || raw.trim() === '') return 1
  const scale = Number(raw)
  if (!(scale > 0)) throw new Error(`FUZZ_SCALE must be a positive number, got ${JSON.stringify(raw)}`)
  return scale
}

export const fuzzSeed = readSeed()
const fuzzScale = readScale()

/** fc.assert parameters: the run's seed, `numRuns` scaled by FUZZ_SCALE. */
export function fuzzParameters (numRuns: number): { seed: number, numRuns: number } {
  return { seed: fuzzSeed, numRuns: Math.max(1, Math.round(numRuns * fuzzScale)) }
}

export function announceSeed (t: { comment (...message: unknown[]): void }): void {
  t.comment(`fuzz seed ${fuzzSeed} (reproduce with FUZZ_SEED=${fuzzSeed}${fuzzScale === 1 ? '' : ` FUZZ_SCALE=${fuzzScale}`})`)
}

// ---------------------------------------------------------------------------
// The upstream spec (read independently of the gateway's generated TypeBox code)

export const servedModels = ['veo-3.1-fast-generate-preview', 'veo-3.1-generate-preview'] as const

export interface SpecProperty {
  type?: string
  enum?: unknown[]
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  maxItems?: number
  format?: string
  items?: SpecProperty
}

export interface SpecObject {
  type: 'object'
  required: string[]
  properties: Record<string, SpecProperty>
  additionalProperties: boolean
  [keyword: string]: unknown
}

function loadRequestSchema (): SpecObject {
  const text = readFileSync(new URL('../../../openapi/models/veo-3.1-fast.yaml', import.meta.url), 'utf8')
  const document = parseYaml(text) as { components: { schemas: { VideoGenerationRequest: SpecObject } } }
  return document.components.schemas.VideoGenerationRequest
}

/** components.schemas.VideoGenerationRequest of openapi/models/veo-3.1-fast.yaml, as written. */
export const specRequestSchema: SpecObject = loadRequestSchema()
const specProperties = specRequestSchema.properties
export const specFields: readonly string[] = Object.keys(specProperties)

function specProperty (name: string): SpecProperty {
  const property = specProperties[name]
  if (property === undefined) throw new Error(`the spec has no property ${name}`)
  return property
}

function specEnum (name: string): unknown[] {
  const values = specProperty(name).enum
  if (!Array.isArray(values) || values.length === 0) throw new Error(`the spec's ${name} has no enum`)
  return values
}

function specRange (name: string, keyword: 'minimum' | 'maximum' | 'minLength' | 'maxLength' | 'maxItems'): number {
  const value = specProperty(name)[keyword]
  if (typeof value !== 'number') throw new Error(`the spec's ${name} has no ${keyword}`)
  return value
}

// ---------------------------------------------------------------------------
// The gateway under test

export interface FuzzGateway {
  app: FastifyInstance
  upstream: StartedSimulator
  /** may use every model; lists `allowedOrigin` */
  tenant: TestTenant
  /** another tenant (its task ids must be 404 for `tenant`) */
  other: TestTenant
  /** limited to veo-3.1-generate-preview (403 for the other model) */
  narrow: TestTenant
  /** a task created by `tenant` / by `other` */
  taskId: string
  otherTaskId: string
}

export const allowedOrigin = 'https://app.fuzz.example'
const unlimited = { max: 1e9, timeWindow: 60_000 }

export const gatewayConfig = { unauthenticatedRateLimitMax: 1e9 }

export function fuzzTenants (): { tenant: TestTenant, other: TestTenant, narrow: TestTenant } {
  return {
    tenant: makeTenant('fuzz', { rateLimit: unlimited, readRateLimit: unlimited, allowedOrigins: [allowedOrigin] }),
    other: makeTenant('fuzz-other', { rateLimit: unlimited, readRateLimit: unlimited }),
    narrow: makeTenant('fuzz-narrow', { rateLimit: unlimited, readRateLimit: unlimited, allowedModels: ['veo-3.1-generate-preview'] })
  }
}

/** A gateway (inject only) with high limits in front of a real simulator, and one task per tenant. */
export async function startFuzzGateway (t: HasTeardown): Promise<FuzzGateway> {
  const upstream = await startTestSimulator(t)
  const { tenant, other, narrow } = fuzzTenants()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [tenant, other, narrow],
    config: gatewayConfig
  })
  const create = async (who: TestTenant): Promise<string> => {
    const response = await app.inject({
      method: 'POST',
      url: '/v1/videos/generations',
      headers: { authorization: who.authorization, 'content-type': 'application/json' },
      payload: JSON.stringify({ model: servedModels[0], prompt: 'fuzz fixture' })
    })
    if (response.statusCode !== 200) throw new Error(`fixture task not created: ${response.statusCode} ${response.body}`)
    return (response.json() as { id: string }).id
  }
  return { app, upstream, tenant, other, narrow, taskId: await create(tenant), otherTaskId: await create(other) }
}

// ---------------------------------------------------------------------------
// The property every answer must satisfy

export interface FuzzRequest {
  method: string
  url: string
  headers?: Record<string, string | string[]>
  payload?: string | Buffer
}

export interface UpstreamCounts {
  create: number
  task: number
}

/** The 4xx rows of the error table in docs/errors.md (the documented contract), as `status code type`. */
function readClientErrorRows (): Set<string> {
  const readme = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8')
  const rows = new Set<string>()
  for (const match of readme.matchAll(/^\| (4\d\d) \| `([a-z_]+)` \| ([a-z_]+) \|/gm)) rows.add(`${match[1]} ${match[2]} ${match[3]}`)
  for (const row of ['400 invalid_request invalid_request_error', '401 unauthorized authentication_error', '404 not_found invalid_request_error']) {
    if (!rows.has(row)) throw new Error(`docs/errors.md's error table has no row ${row}: has its format changed?`)
  }
  return rows
}
const clientErrorRows = readClientErrorRows()

const errorFields = new Set(['code', 'message', 'type', 'request_id', 'param'])

function clip (text: string, max = 400): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length} chars)`
}

export function describeRequest (request: FuzzRequest): string {
  const payload = request.payload === undefined
    ? ''
    : typeof request.payload === 'string' ? clip(JSON.stringify(request.payload)) : `<bytes ${clip(request.payload.toString('hex'))}>`
  const headers = Object.fromEntries(Object.entries(request.headers ?? {}).map(([name, value]) => [name, typeof value === 'string' ? clip(value, 120) : value.map((v) => clip(v, 120))]))
  return `${request.method} ${clip(request.url, 300)} headers=${JSON.stringify(headers)} payload=${payload}`
}

/**
 * Problems with one answer (empty when it is fine):
 * - never 5xx; 2xx, or a 4xx whose body is exactly the error format of a row of
 *   the table with request_id = x-request-id (HEAD: status only), or a redirect to a
 *   same-origin path within /docs (Swagger UI's static files) that is not to itself,
 *   or a 304 with an ETag and no body to a GET or HEAD that sent If-None-Match
 *   (`*` included: RFC 9110 13.1.2, any current representation matches it);
 * - no upstream call unless the answer is 2xx or 304 (and at most one create).
 */
export function answerProblems (
  request: { method: string, url: string, headers?: Record<string, string | string[] | undefined> },
  answer: { statusCode: number, headers: Record<string, unknown>, body: string },
  before: UpstreamCounts,
  after: UpstreamCounts
): string[] {
  const problems: string[] = []
  const status = answer.statusCode
  const conditionalRead = ['GET', 'HEAD'].includes(request.method.toUpperCase()) &&
    Object.keys(request.headers ?? {}).some((name) => name.toLowerCase() === 'if-none-match')
  const notModified = status === 304 && conditionalRead
  const ok = (status >= 200 && status < 300) || notModified
  if (status >= 500) problems.push(`server error ${status}`)
  else if (notModified) {
    if (typeof answer.headers.etag !== 'string') problems.push('304 without an ETag')
    if (answer.body !== '') problems.push(`304 with a body: ${clip(answer.body)}`)
  } else if (status >= 300 && status < 400) {
    const location = answer.headers.location
    if (typeof location !== 'string' || !/^\/(?![/\\])/.test(location) || !decodedPath(location).startsWith('/docs')) {
      problems.push(`redirect ${status} to ${String(location)}: not a same-origin path within /docs`)
    } else if (sameUrl(location, request.url)) problems.push(`redirect ${status} to itself (a redirect loop): ${location}`)
  } else if (status >= 400 && request.method.toUpperCase() !== 'HEAD') {
    problems.push(...errorFormatProblems(status, answer.headers, answer.body))
  } else if (!ok && status < 400) problems.push(`unexpected status ${status}`)

  if (!ok && after.create !== before.create) problems.push(`upstream create call(s) for a ${status} answer (${after.create - before.create})`)
  if (!ok && after.task !== before.task) problems.push(`upstream task call(s) for a ${status} answer (${after.task - before.task})`)
  if (after.create - before.create > 1) problems.push(`${after.create - before.create} upstream create calls for one request`)
  return problems
}

function decodedPath (url: string): string {
  const path = url.split(/[?#]/)[0] ?? ''
  try {
    return decodeURIComponent(path)
  } catch {
    return path
  }
}

function sameUrl (a: string, b: string): boolean {
  try {
    const base = 'http://gateway.test'
    const [x, y] = [new URL(a, base), new URL(b, base)]
    return x.pathname === y.pathname && x.search === y.search
  } catch {
    return a === b
  }
}

export function errorFormatProblems (status: number, headers: Record<string, unknown>, body: string): string[] {
  const problems: string[] = []
  if (!/^application\/json(;|$)/.test(String(headers['content-type']))) problems.push(`content-type ${String(headers['content-type'])}`)
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return [...problems, `body is not JSON: ${clip(body, 200)}`]
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || Object.keys(parsed).join() !== 'error') {
    return [...problems, `body is not {"error":{...}}: ${clip(body, 200)}`]
  }
  const error = (parsed as { error: unknown }).error
  if (typeof error !== 'object' || error === null || Array.isArray(error)) return [...problems, 'error is not an object']
  const fields = error as Record<string, unknown>
  for (const key of Object.keys(fields)) if (!errorFields.has(key)) problems.push(`extra error field ${key}`)
  for (const key of errorFields) {
    if (key === 'param' && !(key in fields)) continue
    if (typeof fields[key] !== 'string') problems.push(`error.${key} is not a string`)
  }
  if (fields.message === '') problems.push('empty message')
  if (!clientErrorRows.has(`${status} ${String(fields.code)} ${String(fields.type)}`)) {
    problems.push(`status/code/type ${status} ${String(fields.code)} ${String(fields.type)} is not a 4xx row of the error table`)
  }
  const requestId = headers['x-request-id']
  if (typeof requestId !== 'string' || requestId === '' || fields.request_id !== requestId) {
    problems.push(`request_id ${String(fields.request_id)} is not the x-request-id header ${String(requestId)}`)
  }
  return problems
}

/** Answer counts per status, for t.comment. */
export class StatusTally {
  readonly counts = new Map<number, number>()
  add (status: number): void {
    this.counts.set(status, (this.counts.get(status) ?? 0) + 1)
  }

  get total (): number {
    let total = 0
    for (const count of this.counts.values()) total += count
    return total
  }

  toString (): string {
    return [...this.counts.entries()].sort(([a], [b]) => a - b).map(([status, count]) => `${status}: ${count}`).join(', ')
  }
}

/**
 * The key-leak capture (test/helpers/leak-capture.ts) appends to a directory that
 * another `tap` run on the same checkout deletes when it starts (test/leak-scan/before.ts);
 * the appends in buildTestApp's onSend hook then fail and the answer becomes a 500
 * that is the harness's, not the gateway's. Recreate it before each request.
 */
export function keepLeakCaptureDir (): void {
  mkdirSync(leakCaptureDir, { recursive: true })
}

/** Sends one request with inject and throws (for fast-check) if the answer breaks the property. */
export async function sendChecked (fx: FuzzGateway, request: FuzzRequest, tally?: StatusTally): Promise<LightMyRequestResponse> {
  keepLeakCaptureDir()
  const calls = fx.upstream.simulator.calls
  const before = { create: calls.create, task: calls.task }
  const response = await fx.app.inject({
    method: request.method as 'GET',
    url: request.url,
    headers: request.headers,
    ...(request.payload === undefined ? {} : { payload: request.payload })
  })
  tally?.add(response.statusCode)
  const problems = answerProblems(request, response, before, { create: calls.create, task: calls.task })
  if (problems.length > 0) {
    throw new Error(`${problems.join('; ')}\n  request: ${describeRequest(request)}\n  answer: ${response.statusCode} ${JSON.stringify(response.headers)} ${clip(response.body)}`)
  }
  return response
}

/** Object.prototype must be untouched after a run. */
export function prototypeIntact (): boolean {
  const probe = {} as Record<string, unknown>
  return Object.getOwnPropertyNames(Object.prototype).every((name) => baselinePrototypeNames.has(name)) &&
    probe.polluted === undefined && probe.isAdmin === undefined && probe.model === undefined
}
const baselinePrototypeNames = new Set(Object.getOwnPropertyNames(Object.prototype))

// ---------------------------------------------------------------------------
// JSON text with control over what JSON.stringify cannot write

/** A piece of JSON text written verbatim (numbers like 4.0 or -0, deep nesting, lone escapes). */
export class RawJson {
  readonly text: string
  constructor (text: string) {
    this.text = text
  }

  toString (): string {
    return `RawJson(${clip(this.text, 60)})`
  }
}

/** An object with exactly these own, enumerable properties, `__proto__` included. */
export function objectOf (entries: ReadonlyArray<readonly [string, unknown]>): Record<string, unknown> {
  const object: Record<string, unknown> = {}
  for (const [key, value] of entries) Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true })
  return object
}

/** JSON text of a value that may hold RawJson pieces and own `__proto__` keys. */
export function toJsonText (value: unknown): string {
  if (value instanceof RawJson) return value.text
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    return `{${Object.keys(value).map((key) => `${JSON.stringify(key)}:${toJsonText((value as Record<string, unknown>)[key])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

// ---------------------------------------------------------------------------
// Strings

/** `arbitrary` in `present` cases out of `present + absent`, else undefined (shrinks to undefined). */
export function maybe<T> (arbitrary: fc.Arbitrary<T>, present = 1, absent = 1): fc.Arbitrary<T | undefined> {
  return fc.oneof({ weight: absent, arbitrary: fc.constant(undefined) }, { weight: present, arbitrary })
}

/**
 * Any code points (lone surrogates included). Not fc.string's 'binary' unit:
 * that one costs over a second to construct in every test process.
 */
const codePointArb = fc.integer({ min: 0, max: 0x10ffff }).map((codePoint) => String.fromCodePoint(codePoint))
export function binaryString (maxLength: number, minLength = 0): fc.Arbitrary<string> {
  return fc.array(codePointArb, { minLength, maxLength }).map((codePoints) => codePoints.join(''))
}

/** Single code points that stress counting, encoding and display. */
const oddCodePoints = ['x', 'é', '\u00e9', '😀', '𝔸', '\u{10FFFF}', '\u0000', '\u001f', '\u007f', '\u202e', '\u200b', '\uFEFF', '\uFFFD', '\u2028', '"', '\\', '/', '<', '%', '\n', '\t', 'ß', 'İ', '中']

/** A string of exactly `count` code points of one kind (lazy: shrinks as a count, not as text). */
export function repeatedArb (counts: number[]): fc.Arbitrary<string> {
  return fc.tuple(fc.constantFrom(...oddCodePoints), fc.constantFrom(...counts)).map(([unit, count]) => unit.repeat(count))
}

/** Strings of every kind, short to huge. */
export const anyStringArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 3, arbitrary: fc.string({ maxLength: 40, unit: 'grapheme' }) },
  { weight: 3, arbitrary: binaryString(40) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20, unit: 'binary-ascii' }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', 'null', 'true', '0', '{}', '[]', '__proto__', 'constructor', '\ud800', '\udfff', 'a\u0000b', '%00', '../../etc/passwd', '$' + '{jndi:ldap://x}', '<script>alert(1)</script>', "' OR 1=1 --") },
  { weight: 1, arbitrary: repeatedArb([1, 255, 256, 1999, 2000, 2001, 4096, 20_000, 70_000]) }
)

// ---------------------------------------------------------------------------
// Valid-looking bodies, built from the spec's enums and ranges

/** URL characters: unreserved, sub-delims, percent-encoded (fc.webUrl costs a second to construct per process). */
const urlCharArb = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&\'()*+,;=:@'.split(''), '%20', '%E2%82%AC', '%00', '%2F', '%25')
const urlPartArb = fc.array(urlCharArb, { maxLength: 12 }).map((chars) => chars.join(''))

/** http(s) URLs: hosts, IPv4/IPv6, ports, paths, queries, fragments. */
export const webUrlArb: fc.Arbitrary<string> = fc.tuple(
  fc.constantFrom('http', 'https', 'HTTPS'),
  fc.webAuthority({ withIPv4: true, withIPv6: true, withPort: true }),
  fc.array(urlPartArb, { maxLength: 4 }),
  maybe(fc.array(urlCharArb, { maxLength: 20 }).map((chars) => chars.join('')), 1, 2),
  maybe(urlPartArb, 1, 3)
).map(([scheme, authority, path, query, fragment]) =>
  `${scheme}://${authority}${path.map((segment) => `/${segment}`).join('')}${query === undefined ? '' : `?${query}`}${fragment === undefined ? '' : `#${fragment}`}`)

/** URIs: mostly valid (RFC 3986, as format "uri" wants), some exotic but valid. */
export const validUriArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: webUrlArb },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'https://example.com/a.png', 'urn:isbn:0451450523', 'mailto:someone@example.com', 'data:image/png;base64,iVBORw0KGgo=',
      'ftp://ftp.example.com/a.png', 'HTTPS://EXAMPLE.COM/A.PNG', 'http://[::1]:8080/a.png', 'https://example.com/%E2%82%AC.png',
      'https://user:pass@example.com:443/a.png?x=1#y', 'file:///tmp/a.png', 'http://127.0.0.1/a.png', 'a:b', 'https://example.com'
    )
  }
)

/** Strings that are not URIs (or are doubtful ones). */
export const invalidUriArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    'not a url', 'https://exa mple.com/a.png', '', '//example.com/a.png', '/relative.png', 'https://例え.jp/画像.png',
    'http://a/%zz', 'https://example.com/\u0000', ' https://example.com/a.png', 'https://example.com/a.png\n', 'http://[::1/a',
    'ht tp://x', ':no-scheme', '1http://x', 'https://example.com/a b.png', 'https://example.com/\u202e.png', 'http://x/<>'
  ),
  anyStringArb
)

function integerInSpec (name: string): fc.Arbitrary<number> {
  const min = specRange(name, 'minimum')
  const max = specRange(name, 'maximum')
  return fc.oneof(fc.constantFrom(min, max, Math.min(min + 1, max), Math.max(max - 1, min)), fc.integer({ min, max }))
}

const promptMax = specRange('prompt', 'maxLength')
const promptMin = specRange('prompt', 'minLength')

/** Prompts within the spec's length (in code points), boundaries included. */
export const validPromptArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ minLength: Math.max(1, promptMin), maxLength: 80 }) },
  { weight: 3, arbitrary: fc.string({ minLength: Math.max(1, promptMin), maxLength: 40, unit: 'grapheme' }) },
  { weight: 2, arbitrary: binaryString(40, Math.max(1, promptMin)) },
  { weight: 1, arbitrary: repeatedArb([promptMin, promptMax - 1, promptMax]) }
)

/** A body the spec and the README's cross-field rules allow (when `obey`), or one that breaks a rule. */
interface BodyParts {
  model: string
  prompt: string
  mode: unknown
  imageCount: number
  images: string[]
  imagesWhenNone: 'omit' | 'empty'
  aspectRatio: unknown
  generateAudio: boolean | undefined
  duration: unknown
  n: number | undefined
  quality: unknown
  seed: number | undefined
  negativePrompt: string | undefined
  personGeneration: unknown
  resizeMode: unknown
  callbackUrl: string | undefined
  obey: boolean
  order: number
}

const maxImages = specRange('image_urls', 'maxItems')

const bodyPartsArb: fc.Arbitrary<BodyParts> = fc.record({
  model: fc.constantFrom(...servedModels),
  prompt: validPromptArb,
  mode: maybe(fc.constantFrom(...specEnum('generation_type')), 2, 1),
  imageCount: fc.integer({ min: 0, max: maxImages }),
  images: fc.array(fc.oneof({ weight: 19, arbitrary: validUriArb }, { weight: 1, arbitrary: invalidUriArb }), { minLength: maxImages, maxLength: maxImages }),
  imagesWhenNone: fc.constantFrom('omit' as const, 'empty' as const),
  aspectRatio: maybe(fc.constantFrom(...specEnum('aspect_ratio'))),
  generateAudio: maybe(fc.boolean()),
  duration: maybe(fc.constantFrom(...specEnum('duration'))),
  n: maybe(integerInSpec('n')),
  quality: maybe(fc.constantFrom(...specEnum('quality'))),
  seed: maybe(integerInSpec('seed')),
  negativePrompt: maybe(fc.oneof(fc.string({ maxLength: 40 }), binaryString(20))),
  personGeneration: maybe(fc.constantFrom(...specEnum('person_generation'))),
  resizeMode: maybe(fc.constantFrom(...specEnum('resize_mode'))),
  callbackUrl: maybe(validUriArb, 1, 30),
  obey: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  order: fc.integer({ min: 0, max: 0x7fffffff })
})

/** Deterministic shuffle (a tiny LCG seeded by the generated `order`). */
function shuffled<T> (items: T[], seed: number): T[] {
  const out = [...items]
  let state = seed >>> 0
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    const j = state % (i + 1)
    const a = out[i] as T
    out[i] = out[j] as T
    out[j] = a
  }
  return out
}

function buildBody (parts: BodyParts): Record<string, unknown> {
  let { imageCount, mode, duration, aspectRatio, resizeMode } = parts
  if (parts.obey) {
    // The README's rules: TEXT no images; FIRST&LAST 1-2; REFERENCE 1-3, 8 s, 16:9;
    // no type: 0-2 images; resize_mode only with images.
    if (mode === 'TEXT') imageCount = 0
    else if (mode === 'FIRST&LAST') imageCount = Math.min(Math.max(imageCount, 1), 2)
    else if (mode === 'REFERENCE') {
      imageCount = Math.max(imageCount, 1)
      if (duration !== undefined) duration = 8
      if (aspectRatio !== undefined) aspectRatio = '16:9'
    } else if (mode === undefined) imageCount = Math.min(imageCount, 2)
    if (imageCount === 0) resizeMode = undefined
  }
  const entries: Array<[string, unknown]> = [
    ['model', parts.model],
    ['prompt', parts.prompt],
    ['generation_type', mode],
    ['image_urls', imageCount === 0 ? (parts.imagesWhenNone === 'omit' ? undefined : []) : parts.images.slice(0, imageCount)],
    ['aspect_ratio', aspectRatio],
    ['generate_audio', parts.generateAudio],
    ['duration', duration],
    ['n', parts.n],
    ['quality', parts.quality],
    ['seed', parts.seed],
    ['negative_prompt', parts.negativePrompt],
    ['person_generation', parts.personGeneration],
    ['resize_mode', resizeMode],
    ['callback_url', parts.callbackUrl]
  ]
  return Object.fromEntries(shuffled(entries.filter(([, value]) => value !== undefined), parts.order))
}

/** Bodies from the spec's enums and ranges (REFERENCE, 3 images, auto, 4k included), most of them acceptable. */
export const validBodyArb: fc.Arbitrary<Record<string, unknown>> = bodyPartsArb.map(buildBody)

// ---------------------------------------------------------------------------
// Mutations of valid bodies

/** Values of every JSON type, odd ones included (as JSON text where JSON.stringify cannot write them). */
export const weirdValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, 1, -1, 0.5, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, Number.MIN_VALUE, '', [], {}),
  fc.constantFrom(new RawJson('-0'), new RawJson('1e400'), new RawJson('-1e400'), new RawJson('4.0'), new RawJson('1E1'), new RawJson('0.1e1'),
    new RawJson('"\\ud800"'), new RawJson('"\\u0000"'), new RawJson('123456789012345678901234567890')),
  fc.double(),
  fc.integer(),
  anyStringArb,
  fc.jsonValue({ maxDepth: 3 }),
  fc.array(anyStringArb, { maxLength: 5 }),
  fc.constantFrom(
    objectOf([['__proto__', { polluted: true }]]),
    objectOf([['constructor', { prototype: { polluted: true } }]]),
    objectOf([['prototype', { polluted: true }]]),
    [objectOf([['__proto__', { isAdmin: true }]])]
  )
)

/** Deeply nested arrays or objects, as text (JSON.stringify would recurse). */
export const deepValueArb: fc.Arbitrary<RawJson> = fc.record({
  depth: fc.constantFrom(2, 64, 500, 5_000, 20_000),
  kind: fc.constantFrom('array', 'object', 'proto')
}).map(({ depth, kind }) => kind === 'array'
  ? new RawJson('['.repeat(depth) + ']'.repeat(depth))
  : kind === 'object'
    ? new RawJson('{"a":'.repeat(depth) + '1' + '}'.repeat(depth))
    : new RawJson('{"a":['.repeat(depth) + '{"__proto__":{"polluted":true}}' + ']}'.repeat(depth)))

/** Keys that are dangerous, near-miss or odd. */
export const oddKeyArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', '__lookupSetter__',
    '', ' ', 'model ', ' model', 'Model', 'PROMPT', 'durations', 'image_url', 'imageUrls', 'callback', 'prompt\u0000', 'промпт', '😀',
    'a'.repeat(1000), 'generation_type\u200b', 'n\t', '$ref', 'id', 'x-request-id', 'authorization'),
  fc.string({ maxLength: 20 }),
  binaryString(10)
)

/** Values at and around the boundaries the spec gives for a field. */
export function boundaryValuesOf (field: string): unknown[] {
  const property = specProperties[field]
  if (property === undefined) return [null]
  const values: unknown[] = [null, new RawJson('-0')]
  if (property.enum !== undefined) {
    for (const value of property.enum) {
      values.push(value)
      if (typeof value === 'string') {
        values.push(value.toUpperCase(), value.toLowerCase(), ` ${value}`, `${value} `, `${value}\u0000`, `${value}x`, value.slice(0, -1), [value], { value })
        values.push(value.replace(/\d/g, (digit) => String.fromCharCode(0xff10 + Number(digit)))) // fullwidth digits
      } else if (typeof value === 'number') {
        values.push(String(value), value + 1, value - 1, value + 0.5, new RawJson(`${value}.0`), new RawJson(`${value}e0`), new RawJson(`${value}.000000000000000001`))
      }
    }
  }
  if (property.minimum !== undefined && property.maximum !== undefined) {
    const { minimum: min, maximum: max } = property
    values.push(min - 1, min, min + 1, max - 1, max, max + 1, min - 0.5, max + 0.5, -max, String(min), String(max), 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2,
      new RawJson(`${max}.0`), new RawJson(`${max}.0000000001`), new RawJson(`${max}.00000000000000000001`), new RawJson(`${min}e0`), new RawJson(`${max + 1}e0`))
  }
  if (property.type === 'boolean') values.push(true, false, 'true', 'false', 0, 1, [true])
  if (property.type === 'string' && property.enum === undefined) {
    const min = property.minLength ?? 0
    for (const count of [0, min, Math.max(min - 1, 0), 1, 2000, 2001]) values.push('x'.repeat(count), '😀'.repeat(count), 'e\u0301'.repeat(Math.ceil(count / 2)))
    if (property.maxLength !== undefined) {
      for (const count of [property.maxLength - 1, property.maxLength, property.maxLength + 1]) values.push('x'.repeat(count), '😀'.repeat(count), '\u0000'.repeat(count))
    }
    if (property.format === 'uri') values.push('https://example.com/hook', 'not a uri', '')
  }
  if (property.type === 'array') {
    const max = property.maxItems ?? 3
    for (const count of [0, 1, max - 1, max, max + 1, 50]) values.push(Array.from({ length: count }, (_, i) => `https://example.com/${i}.png`))
    values.push(['not a uri'], [null], [1], [[]], [{}], 'https://example.com/a.png', { 0: 'https://example.com/a.png' }, ['https://example.com/a.png', 'https://example.com/a.png'])
  }
  return values
}

export type BodyMutation =
  | { kind: 'delete', field: string }
  | { kind: 'set', field: string, value: unknown }
  | { kind: 'extra', key: string, value: unknown }
  | { kind: 'nested-extra', field: string, key: string, value: unknown }
  | { kind: 'wrap-field', field: string }
  | { kind: 'wrap-body' }
  | { kind: 'replace-body', value: unknown }
  | { kind: 'many-keys', count: number }

const allFields = [...specFields]

export const bodyMutationArb: fc.Arbitrary<BodyMutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), field: fc.constantFrom(...allFields) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('set' as const), field: fc.constantFrom(...allFields), value: weirdValueArb }) },
  { weight: 6, arbitrary: fc.oneof(...allFields.map((field) => fc.record({ kind: fc.constant('set' as const), field: fc.constant(field), value: fc.constantFrom(...boundaryValuesOf(field)) }))) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('set' as const), field: fc.constantFrom(...allFields), value: deepValueArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('extra' as const), key: oddKeyArb, value: weirdValueArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('nested-extra' as const), field: fc.constantFrom(...allFields), key: oddKeyArb, value: weirdValueArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('wrap-field' as const), field: fc.constantFrom(...allFields) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'wrap-body' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replace-body' as const), value: weirdValueArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('many-keys' as const), count: fc.constantFrom(100, 3_000) }) }
)

function withEntry (body: unknown, key: string, value: unknown): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body
  const entries = new Map(Object.entries(body))
  entries.set(key, value)
  return objectOf([...entries])
}

export function applyMutation (body: unknown, mutation: BodyMutation): unknown {
  const record = typeof body === 'object' && body !== null && !Array.isArray(body) ? body as Record<string, unknown> : undefined
  switch (mutation.kind) {
    case 'delete':
      return record === undefined ? body : objectOf(Object.entries(record).filter(([key]) => key !== mutation.field))
    case 'set':
      return withEntry(body, mutation.field, mutation.value)
    case 'extra':
      return withEntry(body, mutation.key, mutation.value)
    case 'nested-extra': {
      const current = record?.[mutation.field]
      const nested = typeof current === 'object' && current !== null && !Array.isArray(current)
        ? withEntry(current, mutation.key, mutation.value)
        : Array.isArray(current) ? [...current, objectOf([[mutation.key, mutation.value]])] : objectOf([[mutation.key, mutation.value]])
      return withEntry(body, mutation.field, nested)
    }
    case 'wrap-field':
      return record === undefined || !(mutation.field in record) ? body : withEntry(body, mutation.field, [record[mutation.field]])
    case 'wrap-body':
      return [body]
    case 'replace-body':
      return mutation.value
    case 'many-keys':
      return record === undefined ? body : objectOf([...Object.entries(record), ...Array.from({ length: mutation.count }, (_, i) => [`k${i}`, i] as const)])
  }
}

/** A valid-looking body with 1 to 3 mutations, as JSON text. */
export const mutatedBodyTextArb: fc.Arbitrary<string> = fc.tuple(validBodyArb, fc.array(bodyMutationArb, { minLength: 1, maxLength: 3 }))
  .map(([body, mutations]) => toJsonText(mutations.reduce<unknown>(applyMutation, body)))

// ---------------------------------------------------------------------------
// Mutations of JSON text (what no object can express)

export type TextMutation =
  | { kind: 'duplicate', key: string, value: unknown, where: 'first' | 'last' }
  | { kind: 'truncate', at: number }
  | { kind: 'bytes', at: number, bytes: number[] }
  | { kind: 'wrap', prefix: string, suffix: string }
  | { kind: 'escape-keys' }
  | { kind: 'pad-to', size: number }

/** Invalid UTF-8: lone continuation, overlong, surrogate halves, truncated sequences, 0xFF. */
const badByteSequences = [[0xff], [0xfe, 0xff], [0x80], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0x00], [0x1b, 0x5b, 0x32, 0x4a]]

export const bodyLimitBytes = 65_536

export const textMutationArb: fc.Arbitrary<TextMutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('duplicate' as const),
      key: fc.oneof(fc.constantFrom(...allFields), oddKeyArb),
      value: fc.oneof(weirdValueArb, fc.constantFrom(...servedModels, 'x', 8, 'REFERENCE')),
      where: fc.constantFrom('first' as const, 'last' as const)
    })
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('bytes' as const),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      bytes: fc.oneof(fc.constantFrom(...badByteSequences), fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 8 }))
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('wrap' as const),
      prefix: fc.constantFrom('', '\uFEFF', ' \n\t\r', '/* c */', '//\n', ',', '[', 'garbage', '\u0000'),
      suffix: fc.constantFrom('', ' \n', ',', '}', ']', 'garbage', '\u0000', '{}', ' // c', '\uFEFF')
    })
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'escape-keys' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('pad-to' as const), size: fc.integer({ min: bodyLimitBytes - 3, max: bodyLimitBytes + 3 }) }) }
)

export function applyTextMutation (payload: string | Buffer, mutation: TextMutation): string | Buffer {
  const text = typeof payload === 'string' ? payload : payload.toString('latin1')
  const isObject = typeof payload === 'string' && text.startsWith('{') && text.endsWith('}')
  switch (mutation.kind) {
    case 'duplicate': {
      if (!isObject) return payload
      const member = `${JSON.stringify(mutation.key)}:${toJsonText(mutation.value)}`
      if (text === '{}') return `{${member}}`
      return mutation.where === 'first' ? `{${member},${text.slice(1)}` : `${text.slice(0, -1)},${member}}`
    }
    case 'truncate':
      return typeof payload === 'string' ? text.slice(0, Math.floor(mutation.at * text.length)) : payload.subarray(0, Math.floor(mutation.at * payload.length))
    case 'bytes': {
      const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload
      const at = Math.floor(mutation.at * bytes.length)
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(mutation.bytes), bytes.subarray(at)])
    }
    case 'wrap':
      return typeof payload === 'string' ? `${mutation.prefix}${text}${mutation.suffix}` : Buffer.concat([Buffer.from(mutation.prefix), payload, Buffer.from(mutation.suffix)])
    case 'escape-keys':
      // "prompt" → "\u0070rompt": the same key to a JSON parser, other bytes on the wire
      return typeof payload === 'string' ? text.replace(/"([a-z])([a-z_]*)":/g, (_match, first: string, rest: string) => `"\\u${first.charCodeAt(0).toString(16).padStart(4, '0')}${rest}":`) : payload
    case 'pad-to': {
      if (!isObject) return payload
      const missing = mutation.size - Buffer.byteLength(text)
      return missing <= 0 ? payload : `{${' '.repeat(missing)}${text.slice(1)}`
    }
  }
}

/** Valid or mutated body text, then 1 to 2 text mutations. */
export const rawBodyArb: fc.Arbitrary<string | Buffer> = fc.tuple(
  fc.oneof(validBodyArb.map(toJsonText), mutatedBodyTextArb),
  fc.array(textMutationArb, { minLength: 1, maxLength: 2 })
).map(([text, mutations]) => mutations.reduce<string | Buffer>(applyTextMutation, text))

/** Anything at all as a body: random JSON values and texts, random bytes. */
export const randomBodyArb: fc.Arbitrary<string | Buffer> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue().map((value) => JSON.stringify(value)) },
  { weight: 2, arbitrary: fc.json() },
  { weight: 1, arbitrary: fc.dictionary(oddKeyArb, weirdValueArb, { maxKeys: 8 }).map(toJsonText) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 1, arbitrary: binaryString(200) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200, unit: 'binary-ascii' }) }
)

// ---------------------------------------------------------------------------
// Headers

export interface Credentials {
  key: string
  otherKey: string
}

const controlChars = ['\u0000', '\u0001', '\u0007', '\u0008', '\t', '\n', '\r', '\u001b', '\u007f', '\u0085', '\u00a0']

/** Authorization values: valid, near misses, no or wrong scheme, control chars, unicode, huge, repeated. */
export function authorizationArb (credentials: Credentials): fc.Arbitrary<string | string[] | undefined> {
  const { key, otherKey } = credentials
  const single: fc.Arbitrary<string> = fc.oneof(
    { weight: 4, arbitrary: fc.constant(`Bearer ${key}`) },
    { weight: 1, arbitrary: fc.constant(`Bearer ${otherKey}`) },
    { weight: 2, arbitrary: fc.mixedCase(fc.constant('bearer')).map((scheme) => `${scheme} ${key}`) },
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        key, `Basic ${Buffer.from(`user:${key}`).toString('base64')}`, `Token ${key}`, `Bearer: ${key}`, `Bearer  ${key}`, `Bearer ${key} `,
        ` Bearer ${key}`, `Bearer\t${key}`, `Bearer ${key.slice(0, -1)}`, `Bearer ${key}x`, `Bearer ${key} ${key}`, `Bearer ${key},Bearer ${key}`,
        `Bearer "${key}"`, `Bearer=${key}`, `BearerBearer ${key}`, `Вearer ${key}`, 'Bearer', 'Bearer ', '', ' ', 'Bearer null', 'Bearer undefined',
        `Bearer ${key}\u0000`, `Bearer ${key}\r\n`, `Bearer ${key}\u200b`, `Bearer ${key.toUpperCase()}`, `Digest username="${key}"`
      )
    },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...controlChars), fc.nat()).map(([char, at]) => { const value = `Bearer ${key}`; const i = at % (value.length + 1); return value.slice(0, i) + char + value.slice(i) }) },
    { weight: 2, arbitrary: fc.string({ maxLength: 60, unit: 'grapheme' }).map((text) => `Bearer ${text}`) },
    { weight: 2, arbitrary: binaryString(60) },
    { weight: 1, arbitrary: fc.constantFrom(511, 512, 513, 4096, 16_000, 17_000, 40_000).map((length) => `Bearer ${'k'.repeat(length)}`) },
    { weight: 1, arbitrary: fc.constantFrom(1, 10, 1000).map((count) => `Bearer${' '.repeat(count)}${key}`) }
  )
  return fc.oneof(
    { weight: 10, arbitrary: single },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: fc.array(single, { minLength: 2, maxLength: 3 }) }
  )
}

export const contentTypeArb: fc.Arbitrary<string | string[] | undefined> = fc.oneof(
  { weight: 4, arbitrary: fc.constant('application/json') },
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'application/json; charset=utf-8', 'application/json; charset=latin1', 'application/json;charset=UTF-16', 'application/json; charset="utf-8"',
      'APPLICATION/JSON', 'Application/Json', 'application/json ', ' application/json', 'application/json;', 'application/json ; charset=utf-8',
      'application/json; charset=ключ', 'application/json\u0000', 'application/json, text/plain', 'application/json; boundary=x; charset=utf-8',
      'text/plain', 'text/plain; charset=utf-8', 'text/json', 'text/html', 'multipart/form-data; boundary=----fuzz', 'multipart/form-data',
      'application/x-www-form-urlencoded', 'application/octet-stream', '', ' ', ';', 'application/*', '*/*', 'application/vnd.api+json',
      'application/problem+json', 'application/jsonp', 'application/json-patch+json', 'json', 'application', 'application/',
      '/json', 'application/json/extra', 'application/x-json'
    )
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: binaryString(20) },
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.array(fc.constantFrom('application/json', 'text/plain', ''), { minLength: 2, maxLength: 3 }) }
)

/** content-length: a mode, resolved against the payload's real length. */
export type ContentLengthMode = 'auto' | 'exact' | 'plus1' | 'minus1' | 'zero' | 'negative' | 'text' | 'float' | 'huge' | 'hex' | 'spaced' | 'repeated' | 'conflicting' | 'empty'

export const contentLengthArb: fc.Arbitrary<ContentLengthMode> = fc.oneof(
  { weight: 10, arbitrary: fc.constant('auto' as const) },
  { weight: 4, arbitrary: fc.constantFrom<ContentLengthMode>('exact', 'plus1', 'minus1', 'zero', 'negative', 'text', 'float', 'huge', 'hex', 'spaced', 'repeated', 'conflicting', 'empty') }
)

export function contentLengthValue (mode: ContentLengthMode, length: number): string | string[] | undefined {
  switch (mode) {
    case 'auto': return undefined
    case 'exact': return String(length)
    case 'plus1': return String(length + 1)
    case 'minus1': return String(Math.max(length - 1, 0))
    case 'zero': return '0'
    case 'negative': return '-1'
    case 'text': return 'abc'
    case 'float': return `${length}.5`
    case 'huge': return '99999999999999999999999'
    case 'hex': return `0x${length.toString(16)}`
    case 'spaced': return ` ${length} `
    case 'repeated': return [String(length), String(length)]
    case 'conflicting': return [String(length), String(length + 1)]
    case 'empty': return ''
  }
}

const tokenChars = 'abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&\'*+.^`|~'
export const headerNameArb: fc.Arbitrary<string> = fc.oneof(
  // (an array of characters: fc.string with a custom unit costs a second to construct)
  fc.array(fc.constantFrom(...tokenChars.split('')), { minLength: 1, maxLength: 30 }).map((chars) => `x-${chars.join('')}`),
  fc.constantFrom('x-request-id', 'origin', 'accept', 'accept-encoding', 'accept-charset', 'cookie', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
    'forwarded', 'x-real-ip', 'via', 'expect', 'if-none-match', 'range', 'te', 'upgrade', 'x-http-method-override', 'idempotency-key', 'user-agent',
    'access-control-request-method', 'access-control-request-headers', 'host', 'referer', 'x-api-key', 'proxy-authorization', 'content-encoding',
    'content-language', 'prefer')
)

export const headerValueArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.string({ maxLength: 30, unit: 'grapheme' }),
  fc.string({ maxLength: 30, unit: 'binary-ascii' }),
  fc.constantFrom('', ' ', '*', 'null', allowedOrigin, 'https://evil.example', '127.0.0.1', '::1', 'gzip', 'br, gzip, deflate', 'x'.repeat(129),
    'valid-request-id.123:abc', 'POST', 'DELETE', '100-continue', 'bytes=0-10', 'websocket', 'h2c', 'a'.repeat(8000), '\u0000', 'é', 'identity')
)

/** Bytes of one request's header block as Node counts them (name: value\r\n, request line aside). */
export function headerBytes (headers: Record<string, string | string[]>): number {
  let total = 0
  for (const [name, value] of Object.entries(headers)) {
    for (const one of Array.isArray(value) ? value : [value]) total += Buffer.byteLength(name) + 2 + Buffer.byteLength(one) + 2
  }
  return total
}

/** Node's default --max-http-header-size. */
export const nodeHeaderLimit = 16_384

/** A padding header that brings the header block to about `target` bytes. */
export function padHeaders (headers: Record<string, string | string[]>, target: number): Record<string, string | string[]> {
  const name = 'x-fuzz-pad'
  const missing = target - headerBytes(headers) - (name.length + 4)
  return missing <= 0 ? headers : { ...headers, [name]: 'p'.repeat(missing) }
}

export const headerSizeTargetArb: fc.Arbitrary<number | undefined> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.integer({ min: nodeHeaderLimit - 200, max: nodeHeaderLimit + 200 }) },
  { weight: 1, arbitrary: fc.constantFrom(8_192, 16_383, 16_384, 16_385, 32_768, 65_536, 100_000) }
)

// ---------------------------------------------------------------------------
// Paths and methods

export const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'] as const

/** The gateway's routes (with {id} for a task id), then paths near them. */
export const routeTemplates = [
  '/v1/videos/generations', '/v1/tasks/{id}', '/healthz', '/readyz', '/openapi.json', '/docs', '/docs/', '/docs/json', '/docs/yaml',
  '/docs/static/index.html', '/docs/static/swagger-ui.css'
] as const
export const nearRouteTemplates = [
  '/docs/static/../../package.json', '/', '/v1', '/v1/', '/v1/tasks', '/v1/tasks/', '/v1/videos', '/v1/videos/generations/{id}',
  '/v2/videos/generations', '/_simulator/faults', '/files/x.mp4', '/v1/tasks/{id}/{id}', '/v1//tasks/{id}'
] as const

export interface TaskIds {
  taskId: string
  otherTaskId: string
}

export type IdMutation =
  | { kind: 'flip', at: number, char: string }
  | { kind: 'truncate', at: number }
  | { kind: 'append', text: string }
  | { kind: 'case' }

function editId (id: string, mutation: IdMutation): string {
  switch (mutation.kind) {
    case 'flip': { const i = mutation.at % id.length; return id.slice(0, i) + mutation.char + id.slice(i + 1) }
    case 'truncate': return id.slice(0, mutation.at % id.length)
    case 'append': return id + mutation.text
    case 'case': return id.replace(/[a-z]/g, (c) => c.toUpperCase())
  }
}

/** Task ids: the tenant's own, another tenant's, the raw upstream id, edits, and junk. */
export function taskIdArb (ids: TaskIds): fc.Arbitrary<string> {
  const upstreamId = ids.taskId.split('.')[0] ?? ids.taskId
  const edited = fc.tuple(
    fc.constantFrom(ids.taskId, ids.otherTaskId),
    fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), char: fc.constantFrom('A', 'a', '0', '-', '_', '.', '~', '%') }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('append' as const), text: fc.constantFrom('x', '.', '..', '.AAAA', '%00', '\u0000', '/', '?', '#', ' ', 'é', '=') }),
      fc.constant({ kind: 'case' as const })
    )
  ).map(([id, mutation]) => editId(id, mutation))
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant(ids.taskId) },
    { weight: 1, arbitrary: fc.constantFrom(ids.otherTaskId, upstreamId, `${upstreamId}.${'A'.repeat(22)}`, `${ids.taskId}.${ids.taskId}`) },
    { weight: 4, arbitrary: edited },
    { weight: 2, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 20, unit: 'grapheme' }) },
    { weight: 1, arbitrary: fc.constantFrom(511, 512, 513, 1024, 1025, 5_000).map((length) => 'a'.repeat(length)) },
    { weight: 1, arbitrary: fc.constantFrom('..', '.', '%00', '%2e%2e', '%2F', '%252F', '%', '%zz', '%c0%ae', '%ff', '~', '..%2f..%2fetc%2fpasswd', 'a;b=c', '*', '$', 'a b') }
  )
}

export type PathMutation =
  | { kind: 'trailing-slash' }
  | { kind: 'double-slash', at: number }
  | { kind: 'dot-segment', at: number, segment: string }
  | { kind: 'encode', at: number }
  | { kind: 'double-encode', at: number }
  | { kind: 'upper' }
  | { kind: 'insert', at: number, text: string }
  | { kind: 'query', query: string }
  | { kind: 'fragment', text: string }

export const pathMutationArb: fc.Arbitrary<PathMutation> = fc.oneof(
  fc.constant({ kind: 'trailing-slash' as const }),
  fc.record({ kind: fc.constant('double-slash' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('dot-segment' as const), at: fc.nat(), segment: fc.constantFrom('.', '..', '%2e', '%2E%2E', '.%2e', '%2e%2e%2f', '...') }),
  fc.record({ kind: fc.constant('encode' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('double-encode' as const), at: fc.nat() }),
  fc.constant({ kind: 'upper' as const }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof(fc.constantFrom('%00', '\u0000', '\\', ';', ';a=b', '%20', ' ', 'é', '😀', '%', '%zz', '%ff', '%c0%af', '\t', '\r\n', '*', '@', ':'), fc.string({ maxLength: 5, unit: 'grapheme' })) }),
  {
    arbitrary: fc.record({
      kind: fc.constant('query' as const),
      query: fc.oneof(
        fc.constantFrom('', 'x=1', 'x=1&x=2', 'x', '=', '&&', 'a[b]=c', '__proto__[polluted]=1', 'constructor[prototype][polluted]=1', 'task_id=x', 'model=x',
          '%zz', '%00', 'x=%ff', '?', 'a=' + 'b'.repeat(5_000), Array.from({ length: 2_000 }, (_, i) => `k${i}=${i}`).join('&')),
        fc.string({ maxLength: 40 }),
        fc.string({ maxLength: 20, unit: 'grapheme' })
      )
    }),
    weight: 3
  },
  fc.record({ kind: fc.constant('fragment' as const), text: fc.constantFrom('', 'x', '/../..', '%00') })
)

function percentEncode (char: string): string {
  return [...Buffer.from(char, 'utf8')].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('')
}

export function applyPathMutation (path: string, mutation: PathMutation): string {
  const at = (n: number): number => n % (path.length + 1)
  switch (mutation.kind) {
    case 'trailing-slash': return `${path}/`
    case 'double-slash': { const slashes = [...path.matchAll(/\//g)].map((m) => m.index); const i = slashes[mutation.at % Math.max(slashes.length, 1)] ?? 0; return `${path.slice(0, i)}/${path.slice(i)}` }
    case 'dot-segment': { const slashes = [...path.matchAll(/\//g)].map((m) => m.index); const i = slashes[mutation.at % Math.max(slashes.length, 1)] ?? 0; return `${path.slice(0, i)}/${mutation.segment}${path.slice(i)}` }
    case 'encode': { const i = mutation.at % Math.max(path.length, 1); return path.slice(0, i) + percentEncode(path.charAt(i)) + path.slice(i + 1) }
    case 'double-encode': { const i = mutation.at % Math.max(path.length, 1); return path.slice(0, i) + percentEncode(path.charAt(i)).replace(/%/g, '%25') + path.slice(i + 1) }
    case 'upper': return path.toUpperCase()
    case 'insert': { const i = at(mutation.at); return path.slice(0, i) + mutation.text + path.slice(i) }
    case 'query': return `${path}?${mutation.query}`
    case 'fragment': return `${path}#${mutation.text}`
  }
}

/** A url: a route (with a task id, raw or percent-encoded), then 0 to 2 path mutations. */
/**
 * Whether `app.inject()` can send this URL at all: light-my-request parses it
 * with WHATWG URL against http://localhost, which strips leading control
 * characters and spaces (so "\u0000//" becomes "//", a host-less URL) and
 * throws before any request exists. Such bytes on a real socket are a
 * malformed request line, which the header fuzzer covers over real sockets.
 */
function injectCanSend (url: string): boolean {
  try {
    // eslint-disable-next-line no-new
    new URL(url.startsWith('//') ? `http://localhost${url}` : url, 'http://localhost')
    return true
  } catch {
    return false
  }
}

export function urlArb (ids: TaskIds): fc.Arbitrary<string> {
  return fc.tuple(
    fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...routeTemplates) }, { weight: 1, arbitrary: fc.constantFrom(...nearRouteTemplates) }),
    taskIdArb(ids),
    fc.constantFrom('raw', 'raw', 'encoded', 'double-encoded'),
    fc.oneof({ weight: 2, arbitrary: fc.constant([]) }, { weight: 3, arbitrary: fc.array(pathMutationArb, { minLength: 1, maxLength: 2 }) })
  ).map(([template, id, idEncoding, mutations]) => {
    const encodedId = idEncoding === 'raw' ? id : idEncoding === 'encoded' ? encodeURIComponent(id) : encodeURIComponent(encodeURIComponent(id))
    return mutations.reduce(applyPathMutation, template.replaceAll('{id}', encodedId))
  }).filter(injectCanSend)
}
