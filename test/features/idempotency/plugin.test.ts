import t from 'tap'
import FakeTimers from '@sinonjs/fake-timers'
import { buildTestApp, makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

/** Idempotency-Key on POST /v1/videos/generations, memory store (one instance). */
t.test('Idempotency-Key (memory store)', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme', { allowedOrigins: ['https://app.example.com'] })
  const other = makeTenant('other')
  const narrow = makeTenant('narrow', { allowedModels: ['veo-3.1-generate-preview'] })
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme, other, narrow],
    config: { upstreamTimeoutMs: 300, upstreamBreakerFailures: 0 }
  })
  let keyCounter = 0
  const freshKey = (): string => `key-${process.pid}-${++keyCounter}`
  const create = (key: string | undefined, body: unknown = validBody, tenant: TestTenant = acme) => app.inject({
    method: 'POST',
    url: '/v1/videos/generations',
    headers: { authorization: tenant.authorization, 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) },
    payload: JSON.stringify(body)
  })
  const calls = (): number => upstream.simulator.calls.create

  t.test('without a key every request is its own', async (t) => {
    const before = calls()
    t.equal((await create(undefined)).statusCode, 200)
    t.equal((await create(undefined)).statusCode, 200)
    t.equal(calls() - before, 2)
  })

  t.test('the same key and body replays the answer, without an upstream call', async (t) => {
    const key = freshKey()
    const before = calls()
    const first = await create(key)
    t.equal(first.statusCode, 200)
    t.notOk('idempotent-replayed' in first.headers, 'the first answer is not a replay')
    // The same body with its keys in another order is the same request.
    const reordered = Object.fromEntries(Object.entries(validBody).reverse())
    const again = await create(key, reordered)
    t.equal(again.statusCode, 200)
    t.equal(again.headers['idempotent-replayed'], 'true')
    t.equal(again.body, first.body, 'the same body, the same task id')
    t.match(again.headers['content-type'], /^application\/json/)
    t.not(again.headers['x-request-id'], first.headers['x-request-id'], 'the replay has its own request id')
    t.equal(calls() - before, 1, 'one upstream call for two requests')
  })

  t.test('the same key with another body is 422, and nothing is called', async (t) => {
    const key = freshKey()
    t.equal((await create(key)).statusCode, 200)
    const before = calls()
    const response = await create(key, { ...validBody, prompt: 'A dog playing drums' })
    assertErrorResponse(t, response, {
      status: 422,
      code: 'idempotency_key_reused',
      type: 'invalid_request_error',
      message: 'This Idempotency-Key was already used with a different request body; use a new key for a new request.',
      param: 'Idempotency-Key'
    })
    t.equal(calls(), before)
  })

  t.test('keys are per tenant', async (t) => {
    const key = freshKey()
    const before = calls()
    const mine = await create(key)
    const theirs = await create(key, validBody, other)
    t.equal(theirs.statusCode, 200)
    t.notOk('idempotent-replayed' in theirs.headers, 'another tenant\'s key of the same text is another key')
    t.not(theirs.json().id, mine.json().id)
    t.equal(calls() - before, 2)
  })

  t.test('while the first request is in flight, the same key is 409 with Retry-After', async (t) => {
    const key = freshKey()
    upstream.simulator.faults.push({ route: 'create', delayMs: 150 })
    const before = calls()
    const [first, second] = await Promise.all([create(key), create(key)])
    const statuses = [first.statusCode, second.statusCode].sort()
    t.same(statuses, [200, 409])
    const conflict = first.statusCode === 409 ? first : second
    assertErrorResponse(t, conflict, {
      status: 409,
      code: 'idempotency_key_in_flight',
      type: 'invalid_request_error',
      message: 'A request with this Idempotency-Key is still being processed; retry once it has finished.'
    })
    t.equal(conflict.headers['retry-after'], '1')
    t.equal(calls() - before, 1)
    t.equal((await create(key)).headers['idempotent-replayed'], 'true', 'once it is done, a replay')
  })

  t.test('an upstream 4xx (the caller\'s fault) is stored and replayed, with the replay\'s request id', async (t) => {
    const key = freshKey()
    upstream.simulator.faults.push({ route: 'create', status: 400, body: { error: { code: 'content_policy_violation', message: 'Prompt rejected', type: 'invalid_request_error' } } })
    const before = calls()
    const first = await create(key)
    const expected = { status: 400, code: 'content_policy_violation', type: 'invalid_request_error', message: 'Prompt rejected' }
    assertErrorResponse(t, first, expected)
    const again = await create(key)
    assertErrorResponse(t, again, expected)
    t.equal(again.headers['idempotent-replayed'], 'true')
    t.equal(calls() - before, 1)
  })

  t.test('the gateway\'s transient failures release the key, so that a retry goes through', async (t) => {
    const cases = [
      { name: 'upstream 503', fault: { route: 'create' as const, status: 503 }, status: 502 },
      { name: 'upstream reset', fault: { route: 'create' as const, reset: 'before-headers' as const }, status: 502 },
      { name: 'upstream timeout', fault: { route: 'create' as const, delayMs: 600 }, status: 504 },
      { name: 'upstream 429', fault: { route: 'create' as const, status: 429 }, status: 429 },
      { name: 'upstream 402', fault: { route: 'create' as const, status: 402 }, status: 503 }
    ]
    for (const { name, fault, status } of cases) {
      const key = freshKey()
      upstream.simulator.faults.push(fault)
      const before = calls()
      t.equal((await create(key)).statusCode, status, `${name}: ${status}`)
      const retry = await create(key)
      t.equal(retry.statusCode, 200, `${name}: the retry goes through`)
      t.notOk('idempotent-replayed' in retry.headers, `${name}: and is not a replay`)
      t.equal(calls() - before, 2, `${name}: two upstream calls`)
    }
  })

  t.test('answers decided before the upstream was asked are not stored', async (t) => {
    const key = freshKey()
    const before = calls()
    t.equal((await create(key, validBody, narrow)).statusCode, 403, 'a model the tenant may not use')
    t.equal((await create(key, { ...validBody, model: 'veo-3.1-generate-preview' }, narrow)).statusCode, 200, 'the corrected request may use the same key')
    t.equal((await create(key, { ...validBody, durations: 4 })).statusCode, 400, 'an invalid body never claims a key')
    t.equal(calls() - before, 1)
  })

  t.test('the header must be 1 to 255 characters', async (t) => {
    const before = calls()
    assertErrorResponse(t, await create('k'.repeat(256)), {
      status: 400, code: 'invalid_request', type: 'invalid_request_error', message: '"Idempotency-Key" must NOT have more than 255 characters.', param: 'Idempotency-Key'
    })
    assertErrorResponse(t, await create(''), {
      status: 400, code: 'invalid_request', type: 'invalid_request_error', message: '"Idempotency-Key" must NOT have fewer than 1 characters.', param: 'Idempotency-Key'
    })
    t.equal((await create('k'.repeat(255))).statusCode, 200, '255 is fine')
    t.equal(calls() - before, 1)
  })

  t.test('browsers can read Idempotent-Replayed', async (t) => {
    const response = await app.inject({
      method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization, origin: 'https://app.example.com', 'idempotency-key': freshKey() }, payload: validBody
    })
    t.match(response.headers['access-control-expose-headers'], /idempotent-replayed/)
  })

  t.test('/openapi.json documents the header and the 409 and 422 answers', async (t) => {
    const openapi = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
    const operation = openapi.paths['/v1/videos/generations'].post
    t.match(operation.parameters, [{ in: 'header', name: 'idempotency-key', required: false, schema: { type: 'string', minLength: 1, maxLength: 255 } }])
    t.ok(operation.responses['409'])
    t.ok(operation.responses['422'])
  })
})

t.test('keys expire after IDEMPOTENCY_TTL_MS, and memory stays bounded', async (t) => {
  // A real date: lru-cache reads an entry written at clock 0 as one with no start, never stale.
  const clock = FakeTimers.install({ toFake: ['Date'], now: Date.UTC(2026, 11, 7) })
  t.teardown(() => clock.uninstall())
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme', { rateLimit: { max: 1000, timeWindow: 60_000 } })
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { idempotencyTtlMs: 60_000, idempotencyMemoryMaxKeys: 100 }
  })
  const create = (key: string) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization, 'idempotency-key': key }, payload: validBody })

  t.equal((await create('a')).statusCode, 200)
  clock.tick(59_000)
  t.equal((await create('a')).headers['idempotent-replayed'], 'true', 'within the TTL: a replay')
  clock.tick(1_001)
  const later = await create('a')
  t.equal(later.statusCode, 200)
  t.notOk('idempotent-replayed' in later.headers, 'after it: a new request')

  for (let i = 0; i < 150; i++) await create(`bulk-${i}`)
  // IDEMPOTENCY_MEMORY_MAX_KEYS = 100: bulk-50 … bulk-149 are kept, the 50 before them went first.
  t.equal((await create('bulk-149')).headers['idempotent-replayed'], 'true', 'the newest are kept')
  t.equal((await create('bulk-50')).headers['idempotent-replayed'], 'true', 'the 100th newest too')
  t.notOk('idempotent-replayed' in (await create('bulk-49')).headers, 'the 101st newest went first')
  t.notOk('idempotent-replayed' in (await create('bulk-0')).headers, 'the oldest went first')
})
