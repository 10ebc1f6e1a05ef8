import t from 'tap'
import { buildTestApp, makeTenant, validBody } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'

t.test('security headers fit for a JSON API, on answers and errors alike', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  const answers = [
    await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody }),
    await app.inject({ method: 'GET', url: '/v1/tasks/nope' }),
    await app.inject({ method: 'GET', url: '/nowhere' }),
    await app.inject({ method: 'GET', url: '/healthz' })
  ]
  for (const response of answers) {
    t.match(response.headers, {
      'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store'
    }, `${response.statusCode} answer`)
    t.notOk('x-powered-by' in response.headers)
    t.notOk('server' in response.headers)
  }
  const docs = await app.inject({ method: 'GET', url: '/docs/' })
  t.match(docs.headers['content-security-policy'], /script-src 'self'/, 'the docs page gets a CSP that lets it run')
})
