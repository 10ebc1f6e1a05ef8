import t from 'tap'
import FakeTimers from '@sinonjs/fake-timers'
import { buildTestApp, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

const unauthorized = {
  status: 401,
  code: 'unauthorized',
  type: 'authentication_error',
  message: 'Missing or invalid API key. Send `Authorization: Bearer <tenant key>`.'
}

t.test('tenant keys', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const rotating = makeTenant('rotating')
  const secondKey = 'vgk_second_key_for_rotation_0123456789'
  rotating.definition.keys.push((await import('../../../src/features/tenants/registry.ts')).tenantKeyHash(secondKey))
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, rotating], config: { unauthenticatedRateLimitMax: 1000 } })
  const create = (headers: Record<string, string>) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: validBody })

  t.test('missing, malformed, unknown and look-alike keys are 401 and cost no upstream call', async (t) => {
    upstream.simulator.reset()
    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: '' },
      { authorization: acme.key },
      { authorization: `Basic ${Buffer.from(`x:${acme.key}`).toString('base64')}` },
      { authorization: `Bearer ${acme.key}x` },
      { authorization: `Bearer ${acme.key.slice(0, -1)}` },
      { authorization: `Bearer  ${acme.key}` },
      { authorization: `Bearer ${acme.key} extra` },
      { authorization: `Bearer ${'k'.repeat(600)}` },
      { authorization: `Bearer ${TEST_UPSTREAM_KEY}` },
      { authorization: `Bearer sha256:${acme.definition.keys[0]?.slice(7)}` }
    ]
    for (const headers of attempts) {
      const response = await create(headers)
      assertErrorResponse(t, response, unauthorized)
      t.equal(response.headers['www-authenticate'], 'Bearer realm="video-gateway"')
    }
    t.equal(upstream.simulator.calls.create, 0)
  })

  t.test('the scheme is case-insensitive; every listed key of a tenant works (rotation)', async (t) => {
    t.equal((await create({ authorization: `bearer ${acme.key}` })).statusCode, 200)
    t.equal((await create({ authorization: rotating.authorization })).statusCode, 200)
    t.equal((await create({ authorization: `Bearer ${secondKey}` })).statusCode, 200)
  })

  t.test('auth is checked before the body: no schema hints to strangers', async (t) => {
    const response = await app.inject({ method: 'POST', url: '/v1/videos/generations', payload: '{broken', headers: { 'content-type': 'application/json' } })
    assertErrorResponse(t, response, unauthorized)
  })

  t.test('the caller\'s key is never sent upstream', async (t) => {
    upstream.simulator.reset()
    await create({ authorization: acme.authorization })
    t.same(upstream.simulator.calls.log.map((call) => call.authorization), [`Bearer ${TEST_UPSTREAM_KEY}`])
  })
})

t.test('requests without a valid key are limited per client IP', async (t) => {
  const clock = FakeTimers.install({ toFake: ['Date'] })
  t.teardown(() => clock.uninstall())
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { unauthenticatedRateLimitMax: 3, unauthenticatedRateLimitWindowMs: 60_000 }
  })
  const guess = (remoteAddress: string) => app.inject({ method: 'GET', url: '/v1/tasks/x', remoteAddress, headers: { authorization: 'Bearer guess' } })

  for (let attempt = 0; attempt < 3; attempt++) assertErrorResponse(t, await guess('203.0.113.7'), unauthorized)
  const limited = await guess('203.0.113.7')
  assertErrorResponse(t, limited, { status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error', message: 'Rate limit exceeded, retry in 60 seconds.' })
  t.equal(limited.headers['retry-after'], '60')
  t.equal(limited.headers['ratelimit-policy'], '"ip";q=3;w=60')
  t.equal(limited.headers.ratelimit, '"ip";r=0;t=60')

  assertErrorResponse(t, await guess('198.51.100.1'), unauthorized)
  const valid = await app.inject({ method: 'POST', url: '/v1/videos/generations', remoteAddress: '203.0.113.7', headers: { authorization: acme.authorization }, payload: validBody })
  t.equal(valid.statusCode, 200, 'a valid key from a limited IP still works: the limit is on guessing')

  clock.tick(60_001)
  assertErrorResponse(t, await guess('203.0.113.7'), unauthorized)
})

t.test('unknown routes answer 404 in the format, rate-limited per IP', async (t) => {
  const clock = FakeTimers.install({ toFake: ['Date'] })
  t.teardown(() => clock.uninstall())
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')], config: { unauthenticatedRateLimitMax: 2 } })
  for (const url of ['/v2/videos', '/v1/videos/generations/extra']) {
    assertErrorResponse(t, await app.inject({ method: 'GET', url }), { status: 404, code: 'not_found', type: 'invalid_request_error', message: `No route GET ${url}.` })
  }
  assertErrorResponse(t, await app.inject({ method: 'DELETE', url: '/v1/tasks/x' }), { status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error', message: /retry in 1 minute/ })
})
