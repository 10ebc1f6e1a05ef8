import t from 'tap'
import { buildTestApp, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'

t.test('CORS only for a tenant\'s own allowed origins', async (t) => {
  const upstream = await startTestSimulator(t)
  // browserKeys: this file is about CORS headers; tokens (test/routes/v1/tokens.test.ts) are how browsers authenticate.
  const web = makeTenant('web', { allowedOrigins: ['https://app.example.com'], browserKeys: true })
  const backend = makeTenant('backend')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [web, backend] })

  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/v1/videos/generations',
    headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' }
  })
  t.equal(preflight.statusCode, 204, 'preflight answered without a key')
  t.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com')
  t.match(preflight.headers['access-control-allow-headers'], /authorization/)

  const strangerPreflight = await app.inject({ method: 'OPTIONS', url: '/v1/videos/generations', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
  t.notOk(strangerPreflight.headers['access-control-allow-origin'], 'an origin no tenant lists gets nothing')

  const create = (tenant = web, origin = 'https://app.example.com') => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization, origin }, payload: validBody })
  const allowed = await create()
  t.equal(allowed.headers['access-control-allow-origin'], 'https://app.example.com')
  t.match(allowed.headers['access-control-expose-headers'], /x-request-id/)
  t.match(allowed.headers['access-control-expose-headers'], /ratelimit/)
  t.notOk((await create(web, 'https://evil.example')).headers['access-control-allow-origin'], 'another origin gets no CORS headers')
  t.notOk((await create(backend)).headers['access-control-allow-origin'], 'a tenant without allowedOrigins gets none, even from an origin another tenant lists')
})
