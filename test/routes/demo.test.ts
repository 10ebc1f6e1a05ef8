import t from 'tap'
import { buildTestApp, makeTenant, validBody } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'
import { assertErrorResponse } from '../helpers/assert-error.ts'

t.test('the demo page and its token endpoint', async (t) => {
  const upstream = await startTestSimulator(t)
  const demo = makeTenant('demo')
  const base = { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [demo] }

  t.test('simulator mode (a demo tenant), DEMO_PAGE=auto: page, assets and tokens', async (t) => {
    const app = await buildTestApp(t, { ...base, demoTenantId: demo.id, config: { unauthenticatedRateLimitMax: 3 } })
    const page = await app.inject({ url: '/demo' })
    t.equal(page.statusCode, 200)
    t.equal(page.headers['content-type'], 'text/html; charset=utf-8')
    t.match(page.headers['content-security-policy'], "script-src 'self'")
    t.match(page.headers['content-security-policy'], "frame-ancestors 'none'")
    t.match(page.body, '<script type="module" src="/demo/demo.js"></script>')
    t.equal((await app.inject({ url: '/demo/demo.js' })).headers['content-type'], 'text/javascript; charset=utf-8')
    t.equal((await app.inject({ url: '/demo/demo.css' })).headers['content-type'], 'text/css; charset=utf-8')

    const minted = await app.inject({ method: 'POST', url: '/demo/token', headers: { origin: 'http://localhost:80' } })
    t.equal(minted.statusCode, 200)
    const { token, expires_in: expiresIn } = minted.json<{ token: string, expires_in: number }>()
    t.equal(expiresIn, 600)
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
    t.equal(claims.sub, demo.id)
    t.equal(claims.origin, 'http://localhost:80', 'bound to the page\'s own origin')
    t.equal(claims.max_creates, 20)
    t.equal(claims.end_user, 'demo-page')
    const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: `Bearer ${token}`, origin: 'http://localhost:80' }, payload: validBody })
    t.equal(created.statusCode, 200, 'the page can create with it')

    // No key needed, so limited per client IP like any unauthenticated request.
    await app.inject({ method: 'POST', url: '/demo/token' })
    await app.inject({ method: 'POST', url: '/demo/token' })
    const limited = await app.inject({ method: 'POST', url: '/demo/token' })
    assertErrorResponse(t, limited, { status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error', message: /^Rate limit exceeded, retry in / })
  })

  t.test('DEMO_PAGE=auto without a demo tenant (a real upstream): no demo at all', async (t) => {
    const app = await buildTestApp(t, base)
    assertErrorResponse(t, await app.inject({ url: '/demo' }), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'No route GET /demo.' })
  })

  t.test('DEMO_PAGE=on without a demo tenant: the page (tokens are pasted), no token endpoint', async (t) => {
    const app = await buildTestApp(t, { ...base, config: { demoPage: 'on' } })
    t.equal((await app.inject({ url: '/demo' })).statusCode, 200)
    assertErrorResponse(t, await app.inject({ method: 'POST', url: '/demo/token' }), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'No route POST /demo/token.' })
  })

  t.test('DEMO_PAGE=off: nothing, even in simulator mode', async (t) => {
    const app = await buildTestApp(t, { ...base, demoTenantId: demo.id, config: { demoPage: 'off' } })
    t.equal((await app.inject({ url: '/demo' })).statusCode, 404)
    t.equal((await app.inject({ method: 'POST', url: '/demo/token' })).statusCode, 404)
  })

  t.test('the demo is not in /openapi.json, except its token endpoint', async (t) => {
    const app = await buildTestApp(t, { ...base, demoTenantId: demo.id })
    const paths = Object.keys((await app.inject({ url: '/openapi.json' })).json<{ paths: Record<string, unknown> }>().paths)
    t.ok(paths.includes('/demo/token'))
    t.notOk(paths.includes('/demo'))
  })
})
