import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, logCollector, makeTenant, testGatewaySecret, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { redisForTests } from '../../helpers/redis.ts'

const appOrigin = 'https://app.example.com'
const otherOrigin = 'https://other.example.com'

async function mint (app: FastifyInstance, tenant: TestTenant, body: Record<string, unknown> = {}): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/v1/tokens', headers: { authorization: tenant.authorization }, payload: body })
  if (response.statusCode !== 200) throw new Error(`mint failed: ${response.body}`)
  return response.json<{ token: string }>().token
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

t.test('POST /v1/tokens and what a browser token may do', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 60_000 })
  let clock = Date.now()
  const web = makeTenant('web', { allowedOrigins: [appOrigin, otherOrigin], endUserRateLimit: { max: 2, timeWindow: 60_000 } })
  const backend = makeTenant('backend')
  const logs = logCollector()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [web, backend],
    seams: { clock: () => clock },
    logger: { level: 'info', stream: logs.stream }
  })
  const create = (headers: Record<string, string>, body: Record<string, unknown> = validBody) =>
    app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: body })

  t.test('a minted token creates and reads, within the tenant', async (t) => {
    const response = await app.inject({ method: 'POST', url: '/v1/tokens', headers: { authorization: web.authorization }, payload: {} })
    t.equal(response.statusCode, 200)
    const body = response.json<{ token: string, token_type: string, expires_at: number, expires_in: number }>()
    t.same(Object.keys(body).sort(), ['expires_at', 'expires_in', 'token', 'token_type'])
    t.equal(body.token_type, 'Bearer')
    t.equal(body.expires_in, 600, 'ten minutes by default')
    t.equal(body.expires_at, Math.floor(clock / 1000) + 600)
    t.match(body.token, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/)
    const header = JSON.parse(Buffer.from(body.token.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, string>
    t.same(Object.keys(header).sort(), ['alg', 'kid', 'typ'], 'a key id names the signing key')
    t.equal(header.alg, 'HS256')

    const created = await create(bearer(body.token))
    t.equal(created.statusCode, 200)
    const id = created.json<{ id: string }>().id
    const read = await app.inject({ url: `/v1/tasks/${id}`, headers: bearer(body.token) })
    t.equal(read.statusCode, 200)
    t.equal(read.json<{ id: string }>().id, id, 'the same tenant-scoped id')
    const byKey = await app.inject({ url: `/v1/tasks/${id}`, headers: { authorization: web.authorization } })
    t.equal(byKey.statusCode, 200, 'the task is the tenant\'s, whoever created it')
    const otherTenant = await app.inject({ url: `/v1/tasks/${id}`, headers: { authorization: backend.authorization } })
    t.equal(otherTenant.statusCode, 404)
  })

  t.test('a token cannot mint tokens', async (t) => {
    const token = await mint(app, web)
    const response = await app.inject({ method: 'POST', url: '/v1/tokens', headers: bearer(token), payload: {} })
    assertErrorResponse(t, response, { status: 403, code: 'forbidden', type: 'permission_error', message: 'Browser tokens cannot be used here; send the tenant key from your backend.', param: 'token' })
  })

  t.test('expired, tampered and foreign tokens are 401 in the format', async (t) => {
    const token = await mint(app, web, { ttl_seconds: 60 })
    const mintedAt = clock
    t.teardown(() => { clock = mintedAt })
    clock += 64_000
    t.equal((await create(bearer(token))).statusCode, 200, 'still valid within the clock tolerance')
    clock += 2_000
    const expired = await create(bearer(token))
    const expiredAt = new Date((Math.floor(mintedAt / 1000) + 60) * 1000).toISOString()
    assertErrorResponse(t, expired, { status: 401, code: 'token_expired', type: 'authentication_error', message: `The token expired at ${expiredAt}; get a new one.` })
    t.equal(expired.headers['www-authenticate'], 'Bearer realm="video-gateway", error="invalid_token"')
    clock = mintedAt

    const [head, payload, signature] = token.split('.') as [string, string, string]
    const flipped = signature.startsWith('A') ? 'B' + signature.slice(1) : 'A' + signature.slice(1)
    const invalidMessage = 'The token is invalid (malformed, tampered with, or not for this gateway).'
    assertErrorResponse(t, await create(bearer(`${head}.${payload}.${flipped}`)), { status: 401, code: 'invalid_token', type: 'authentication_error', message: invalidMessage })
    // Widening its own grant: a payload that says another tenant, with the old signature.
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: backend.id })).toString('base64url')
    assertErrorResponse(t, await create(bearer(`${head}.${forged}.${signature}`)), { status: 401, code: 'invalid_token', type: 'authentication_error', message: invalidMessage })

    // Signed by another gateway (another secret): its key id is unknown here.
    const stranger = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web], config: { gatewaySecret: 'another-gateway-secret-0123456789-abcdefgh' } })
    const strangerToken = await mint(stranger, web)
    assertErrorResponse(t, await create(bearer(strangerToken)), { status: 401, code: 'invalid_token', type: 'authentication_error', message: 'The token was not issued by this gateway (unknown key id).' })
  })

  t.test('operations, models, qualities and duration narrow the token', async (t) => {
    const readOnly = await mint(app, web, { operations: ['read'] })
    assertErrorResponse(t, await create(bearer(readOnly)), { status: 403, code: 'forbidden', type: 'permission_error', message: 'This token does not allow "create".', param: 'token' })
    const createOnly = await mint(app, web, { operations: ['create'] })
    const id = (await create(bearer(createOnly))).json<{ id: string }>().id
    assertErrorResponse(t, await app.inject({ url: `/v1/tasks/${id}`, headers: bearer(createOnly) }), { status: 403, code: 'forbidden', type: 'permission_error', message: 'This token does not allow "read".', param: 'token' })

    const narrow = await mint(app, web, { models: ['veo-3.1-fast-generate-preview'], qualities: ['720p'], max_duration: 6 })
    assertErrorResponse(t, await create(bearer(narrow), { ...validBody, model: 'veo-3.1-generate-preview' }), { status: 403, code: 'forbidden', type: 'permission_error', message: 'This token may not use model "veo-3.1-generate-preview".', param: 'model' })
    assertErrorResponse(t, await create(bearer(narrow), { ...validBody, quality: '1080p' }), { status: 403, code: 'forbidden', type: 'permission_error', message: 'This token may not use quality "1080p" (allowed: 720p).', param: 'quality' })
    assertErrorResponse(t, await create(bearer(narrow), { ...validBody, duration: 8 }), { status: 403, code: 'forbidden', type: 'permission_error', message: 'This token allows videos of at most 6 seconds.', param: 'duration' })
    t.equal((await create(bearer(narrow), { ...validBody, duration: 6, quality: '720p' })).statusCode, 200)
    t.equal((await create(bearer(narrow))).statusCode, 200, 'defaults (720p, 4 s) are within the grant')
  })

  t.test('a create cap per token; a create the upstream refused is not counted', async (t) => {
    const token = await mint(app, web, { max_creates: 2 })
    t.equal((await create(bearer(token))).statusCode, 200)
    upstream.simulator.faults.push({ route: 'create', status: 500, times: 1 })
    t.equal((await create(bearer(token))).statusCode, 502, 'the upstream failed this one')
    t.equal((await create(bearer(token))).statusCode, 200, 'so the second create is still allowed')
    assertErrorResponse(t, await create(bearer(token)), { status: 403, code: 'forbidden', type: 'permission_error', message: 'This token\'s create limit (2) is used up; get a new token.', param: 'token' })
    const zero = await mint(app, web, { max_creates: 0 })
    t.equal((await create(bearer(zero))).statusCode, 403, 'max_creates 0: a read-only token in effect')
  })

  t.test('end users: logged, and limited by the tenant\'s endUserRateLimit', async (t) => {
    const alice = await mint(app, web, { end_user: 'alice@example' })
    const bob = await mint(app, web, { end_user: 'bob' })
    t.equal((await create(bearer(alice))).statusCode, 200)
    t.equal((await create(bearer(alice))).statusCode, 200)
    const third = await create(bearer(alice))
    assertErrorResponse(t, third, { status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error', message: /^Rate limit exceeded, retry in \d+ seconds\.$/ })
    t.match(third.headers['ratelimit-policy'], '"end-user";q=2;w=60')
    t.equal((await create(bearer(bob))).statusCode, 200, 'another end user of the same tenant is not held back')
    const requestLines = logs.lines.filter((line) => line.msg === 'request' && line.endUser === 'alice@example')
    t.equal(requestLines.length, 3, 'the end user is in each access-log line')
    t.equal(requestLines[0]?.tenant, web.id)
  })

  t.test('origins: bound tokens, tenant origins, tenant keys in browsers', async (t) => {
    const bound = await mint(app, web, { origin: appOrigin })
    const fromApp = await create({ ...bearer(bound), origin: appOrigin })
    t.equal(fromApp.statusCode, 200)
    t.equal(fromApp.headers['access-control-allow-origin'], appOrigin)
    t.match(fromApp.headers['access-control-expose-headers'], /idempotent-replayed/)
    assertErrorResponse(t, await create({ ...bearer(bound), origin: otherOrigin }), { status: 403, code: 'forbidden', type: 'permission_error', message: `This token is bound to another origin than ${otherOrigin}.`, param: 'origin' })
    t.equal((await create(bearer(bound))).statusCode, 200, 'no Origin (not a cross-origin browser request): the binding has nothing to check')

    const unbound = await mint(app, web)
    assertErrorResponse(t, await create({ ...bearer(unbound), origin: 'https://evil.example' }), { status: 403, code: 'forbidden', type: 'permission_error', message: 'Origin https://evil.example is not allowed for this tenant.', param: 'origin' })

    const keyFromBrowser = await create({ authorization: web.authorization, origin: appOrigin })
    assertErrorResponse(t, keyFromBrowser, { status: 403, code: 'forbidden', type: 'permission_error', message: 'Tenant keys are not accepted from browser pages: mint a short-lived token with POST /v1/tokens from your backend.', param: 'authorization' })
    t.equal(keyFromBrowser.headers['access-control-allow-origin'], appOrigin, 'the page can read why')
    t.equal((await create({ authorization: web.authorization, origin: 'http://localhost:80' })).statusCode, 200, 'a page of the gateway itself (same origin) may use a key')

    assertErrorResponse(t, await app.inject({ method: 'POST', url: '/v1/tokens', headers: { authorization: web.authorization }, payload: { origin: 'https://evil.example' } }), {
      status: 400, code: 'invalid_request', type: 'invalid_request_error', message: 'origin "https://evil.example" is not one of this tenant\'s allowedOrigins.', param: 'origin'
    })
  })

  t.test('an auth failure from an allowed origin carries CORS headers, so the page can read it', async (t) => {
    const missing = await create({ origin: appOrigin })
    t.equal(missing.statusCode, 401)
    t.equal(missing.headers['access-control-allow-origin'], appOrigin)
    t.equal(missing.headers.vary, 'Origin')
    const stranger = await create({ origin: 'https://evil.example' })
    t.equal(stranger.statusCode, 401)
    t.notOk(stranger.headers['access-control-allow-origin'], 'an origin no tenant lists gets nothing')
  })

  t.test('mint validation', async (t) => {
    const mintWith = (payload: unknown) => app.inject({ method: 'POST', url: '/v1/tokens', headers: { authorization: web.authorization }, payload: payload as Record<string, unknown> })
    assertErrorResponse(t, await mintWith({ ttl_seconds: 7201 }), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: /ttl_seconds/, param: 'ttl_seconds' })
    assertErrorResponse(t, await mintWith({ operations: ['delete'] }), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: /operations/, param: 'operations[0]' })
    assertErrorResponse(t, await mintWith({ scope: 'admin' }), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: /scope/, param: 'scope' })
    assertErrorResponse(t, await mintWith({ end_user: 'a b' }), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: /end_user/, param: 'end_user' })
    const twoHours = await mintWith({ ttl_seconds: 7200 })
    t.equal(twoHours.json<{ expires_in: number }>().expires_in, 7200)
    assertErrorResponse(t, await app.inject({ method: 'POST', url: '/v1/tokens', payload: {} }), { status: 401, code: 'unauthorized', type: 'authentication_error', message: 'Missing or invalid API key. Send `Authorization: Bearer <tenant key>`.' })
  })
})

t.test('?token= is taken on the events route only, only for tokens, and never logged', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 50 })
  const web = makeTenant('web-events', { allowedOrigins: [appOrigin] })
  const logs = logCollector()
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web], logger: { level: 'debug', stream: logs.stream } })
  const token = await mint(app, web)
  const id = (await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: bearer(token), payload: validBody })).json<{ id: string }>().id
  await new Promise((resolve) => setTimeout(resolve, 100))

  const events = await app.inject({ url: `/v1/tasks/${id}/events?token=${token}` })
  t.equal(events.statusCode, 200)
  t.match(events.body, /event: end/)
  const unauthorized = { status: 401, code: 'unauthorized', type: 'authentication_error', message: 'Missing or invalid API key. Send `Authorization: Bearer <tenant key>`.' }
  assertErrorResponse(t, await app.inject({ url: `/v1/tasks/${id}?token=${token}` }), unauthorized)
  assertErrorResponse(t, await app.inject({ url: `/v1/tasks/${id}/events?token=${encodeURIComponent(web.key)}` }), unauthorized)
  // The signature's first character changed (its last ones may carry padding bits a decoder ignores).
  const [head, payload, signature] = token.split('.') as [string, string, string]
  const tamperedSignature = (signature.startsWith('A') ? 'B' : 'A') + signature.slice(1)
  const tampered = await app.inject({ url: `/v1/tasks/${id}/events?token=${head}.${payload}.${tamperedSignature}` })
  t.equal(tampered.statusCode, 401)

  const logged = logs.lines.map((line) => JSON.stringify(line))
  t.ok(logged.some((line) => line.includes('"route":"/v1/tasks/:task_id/events"')), 'the events requests were logged')
  t.notOk(logged.some((line) => line.includes(token.split('.')[2]!)), 'no log line carries the token')
  t.notOk(logged.some((line) => line.includes('token=')), 'no log line carries the query')
})

t.test('signing-key rotation keeps issued tokens valid', async (t) => {
  const upstream = await startTestSimulator(t)
  const web = makeTenant('rotation')
  const oldSecret = testGatewaySecret
  const newSecret = 'a-new-gateway-secret-after-rotation-0123456789'
  const before = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web] })
  const issuedBefore = await mint(before, web)
  const after = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web], config: { gatewaySecret: `${newSecret},${oldSecret}` } })
  const issuedAfter = await mint(after, web)
  t.not(JSON.parse(Buffer.from(issuedAfter.split('.')[0]!, 'base64url').toString()).kid, JSON.parse(Buffer.from(issuedBefore.split('.')[0]!, 'base64url').toString()).kid, 'the new secret signs under a new key id')
  const createWith = (app: FastifyInstance, token: string) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: bearer(token), payload: validBody })
  t.equal((await createWith(after, issuedBefore)).statusCode, 200, 'a token issued before the rotation still works')
  t.equal((await createWith(after, issuedAfter)).statusCode, 200)
  const retired = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web], config: { gatewaySecret: newSecret } })
  t.equal((await createWith(retired, issuedBefore)).statusCode, 401, 'once the old secret is removed, its tokens stop')
})

t.test('a token\'s create cap holds across instances sharing Redis', async (t) => {
  const redis = await redisForTests()
  if ('skip' in redis) { t.comment(redis.skip); return }
  const upstream = await startTestSimulator(t)
  const web = makeTenant('cap-redis', { rateLimit: { max: 1000, timeWindow: 60_000 } })
  const options = { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web], config: { redisUrl: redis.url } }
  const first = await buildTestApp(t, options)
  const second = await buildTestApp(t, options)
  const token = await mint(first, web, { max_creates: 5 })
  const answers = await Promise.all(Array.from({ length: 20 }, (_, index) =>
    (index % 2 === 0 ? first : second).inject({ method: 'POST', url: '/v1/videos/generations', headers: bearer(token), payload: validBody })))
  const statuses = answers.map((answer) => answer.statusCode)
  t.equal(statuses.filter((status) => status === 200).length, 5, 'exactly the cap, across both')
  t.equal(statuses.filter((status) => status === 403).length, 15)
})

t.test('tokens spend the tenant\'s budget; a create the budget refuses does not use up the token', async (t) => {
  const upstream = await startTestSimulator(t)
  const web = makeTenant('token-budget', { budget: { videoSecondsPerDay: 8 } })
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web] })
  const token = await mint(app, web, { max_creates: 3 })
  const create = (headers: Record<string, string>) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: { ...validBody, duration: 4 } })
  t.equal((await create(bearer(token))).statusCode, 200)
  t.equal((await create({ authorization: web.authorization })).statusCode, 200, 'the tenant key and the token share one budget')
  const overBudget = await create(bearer(token))
  t.equal(overBudget.statusCode, 429)
  t.equal(overBudget.json<{ error: { code: string } }>().error.code, 'budget_exceeded')
  const usage = (await app.inject({ url: '/v1/usage', headers: { authorization: web.authorization } })).json<{ total: { tasks_created: number, video_seconds: number } }>()
  t.equal(usage.total.tasks_created, 2)
  t.equal(usage.total.video_seconds, 8)
  assertErrorResponse(t, await app.inject({ url: '/v1/usage', headers: bearer(token) }), { status: 403, code: 'forbidden', type: 'permission_error', message: 'Browser tokens cannot be used here; send the tenant key from your backend.', param: 'token' })

  // The budget's refusal was taken back from the token's cap: the next day, with room again, it is usable.
  // Minutes before midnight, so that the next day comes while the token lives (one clock for both).
  let day = Date.parse('2026-06-15T23:57:00Z')
  const dated = makeTenant('token-budget-dated', { budget: { videoSecondsPerDay: 4 } })
  const second = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [dated], seams: { clock: () => day } })
  const capped = await mint(second, dated, { max_creates: 2 })
  const createDated = () => second.inject({ method: 'POST', url: '/v1/videos/generations', headers: bearer(capped), payload: { ...validBody, duration: 4 } })
  t.equal((await createDated()).statusCode, 200, 'the first of two')
  t.equal((await createDated()).statusCode, 429, 'over the day\'s budget')
  day += 5 * 60_000
  const secondDay = await createDated()
  t.equal(secondDay.statusCode, 200, 'the second of two: the refused one was not counted: ' + secondDay.body)
  t.equal((await createDated()).statusCode, 403, 'and now the token\'s cap is used up')
})

t.test('which end user spent what: GET /v1/usage?end_user=', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 50 })
  const web = makeTenant('token-usage')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web], config: { taskStatusTtlMs: 50 } })
  const alice = await mint(app, web, { end_user: 'alice' })
  const bob = await mint(app, web, { end_user: 'bob' })
  const create = (token: string, duration: number) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: bearer(token), payload: { ...validBody, duration } })
  const aliceTask = (await create(alice, 8)).json<{ id: string }>().id
  await create(bob, 4)
  await create(bob, 4)
  await new Promise((resolve) => setTimeout(resolve, 120))
  // Alice's task is seen finished on a read with the tenant key: it still counts as hers.
  t.equal((await app.inject({ url: `/v1/tasks/${aliceTask}`, headers: { authorization: web.authorization } })).json<{ status: string }>().status, 'completed')
  const usageOf = async (query: string) => (await app.inject({ url: `/v1/usage${query}`, headers: { authorization: web.authorization } })).json<{ end_user?: string, total: Record<string, number> }>()
  const aliceUsage = await usageOf('?end_user=alice')
  t.equal(aliceUsage.end_user, 'alice')
  t.match(aliceUsage.total, { requests: 1, tasks_created: 1, tasks_completed: 1, video_seconds: 8 })
  t.ok((aliceUsage.total.credits ?? 0) > 0)
  t.match((await usageOf('?end_user=bob')).total, { requests: 2, tasks_created: 2, tasks_completed: 0, video_seconds: 8 })
  const whole = await usageOf('')
  t.notOk('end_user' in whole)
  t.match(whole.total, { tasks_created: 3, video_seconds: 16 })
  assertErrorResponse(t, await app.inject({ url: '/v1/usage?end_user=a%20b', headers: { authorization: web.authorization } }), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: /end_user/, param: 'end_user' })
})
