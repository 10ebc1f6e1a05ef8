import t from 'tap'
import type { LookupFunction } from '../../../src/http/destination.ts'
import { buildTestApp, makeTenant, validBody } from '../../helpers/gateway.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { attemptsRecorded, manualClock, testWebhookSecret } from '../../helpers/webhooks.ts'

t.test('SSRF: callback_url destinations the gateway refuses at create time (no allow-list)', async (t) => {
  const upstream = await startTestSimulator(t, { allowPrivateCallbackUrls: true })
  const acme = makeTenant('acme', { webhookSecrets: [testWebhookSecret] })
  const noSecret = makeTenant('nosecret')
  const answers: Record<string, string[]> = {
    'hooks.example.com': ['93.184.216.34'],
    'internal.example.com': ['10.20.30.40'],
    localhost: ['127.0.0.1', '::1']
  }
  const lookup: LookupFunction = (hostname, _options, callback) => {
    const addresses = answers[hostname]
    if (addresses === undefined) callback(Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }), [])
    else callback(null, addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })))
  }
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme, noSecret],
    config: { publicBaseUrl: 'https://gateway.example.com' },
    seams: { dnsLookup: lookup }
  })
  const create = (callbackUrl: string, tenant = acme) => app.inject({
    method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization }, payload: { ...validBody, callback_url: callbackUrl }
  })

  const refused: Array<[string, string]> = [
    ['https://127.0.0.1/hook', 'callback_url is a loopback address, which the gateway does not call.'],
    ['https://10.0.0.1/hook', 'callback_url is a private address, which the gateway does not call.'],
    ['https://169.254.169.254/latest/meta-data/', 'callback_url is a linkLocal address, which the gateway does not call.'],
    ['https://[::1]/hook', 'callback_url is a loopback address, which the gateway does not call.'],
    ['https://internal.example.com/hook', 'callback_url resolves to a private address, which the gateway does not call.'],
    ['https://localhost:8443/hook', 'callback_url resolves to a loopback address, which the gateway does not call.'],
    ['https://[::ffff:127.0.0.1]/hook', 'callback_url is a loopback address, which the gateway does not call.'],
    ['https://[::ffff:a9fe:a9fe]/hook', 'callback_url is a linkLocal address, which the gateway does not call.'],
    ['https://2130706433/hook', 'callback_url is a loopback address, which the gateway does not call.'],
    ['https://user:secret@hooks.example.com/hook', 'callback_url must not contain credentials.'],
    ['http://hooks.example.com/hook', 'callback_url must use https.'],
    ['https://unresolvable.example.com/hook', 'callback_url has a hostname that does not resolve.']
  ]
  for (const [url, message] of refused) {
    t.test(`refused: ${url}`, async (t) => {
      upstream.simulator.reset()
      const response = await create(url)
      assertErrorResponse(t, response, { status: 400, code: 'invalid_request', type: 'invalid_request_error', message, param: 'callback_url' })
      t.equal(upstream.simulator.calls.create, 0, 'no upstream call')
    })
  }

  t.test('a tenant without a webhook secret cannot use callback_url', async (t) => {
    upstream.simulator.reset()
    const response = await create('https://hooks.example.com/hook', noSecret)
    assertErrorResponse(t, response, { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: 'callback_url is not available: no webhook signing secret is configured for this tenant.', param: 'callback_url' })
    t.equal(upstream.simulator.calls.create, 0)
  })

  t.test('a public https destination is accepted, and the upstream gets the gateway\'s URL', async (t) => {
    upstream.simulator.reset()
    const response = await create('https://hooks.example.com/hook')
    t.equal(response.statusCode, 200, response.body)
    const sent = upstream.simulator.calls.log.at(-1)?.body as { callback_url: string }
    t.match(sent.callback_url, /^https:\/\/gateway\.example\.com\/callbacks\/evolink\/[A-Za-z0-9_-]{43}$/)
  })
})

t.test('SSRF at delivery: a name that resolved to a public address at create time and to loopback later (DNS rebinding) is not called', async (t) => {
  const clock = manualClock()
  const upstream = await startTestSimulator(t, { now: clock.now, taskDurationMs: 1000, allowPrivateCallbackUrls: true })
  const acme = makeTenant('acme', { webhookSecrets: [testWebhookSecret] })
  let answer = '93.184.216.34'
  const resolved: string[] = []
  const lookup: LookupFunction = (hostname, _options, callback) => {
    resolved.push(hostname)
    callback(null, [{ address: answer, family: 4 }])
  }
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { publicBaseUrl: 'https://gateway.example.com', webhookPollIntervalMs: 3_600_000 },
    seams: { clock: clock.now, dnsLookup: lookup }
  })
  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: { ...validBody, callback_url: 'https://rebind.example.com/hook' } })
  t.equal(created.statusCode, 200, created.body)
  const taskId = created.json().id
  const callbackPath = new URL((upstream.simulator.calls.log.at(-1)?.body as { callback_url: string }).callback_url).pathname

  answer = '127.0.0.1'
  clock.advance(2000)
  t.equal((await app.inject({ method: 'POST', url: callbackPath, payload: {} })).statusCode, 200)
  await attemptsRecorded(app, acme.authorization, taskId, 1)
  t.same(resolved, ['rebind.example.com', 'rebind.example.com'], 'resolved at create time and again when connecting')
  const listed = await app.inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${taskId}`, headers: { authorization: acme.authorization } })
  t.match(listed.json().data[0], {
    status: 'pending',
    attempts: [{ attempt: 1, response_status: null, error: 'destination refused: webhook destination resolves to a loopback address, which the gateway does not call' }]
  })
})

t.test('a bad WEBHOOK_ALLOWED_DESTINATIONS stops start-up with a message naming it', async (t) => {
  const upstream = await startTestSimulator(t)
  await t.rejects(buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [], config: { webhookAllowedDestinations: '127.0.0.1/32,10.0.0.0/99' } }), {
    name: 'ConfigError',
    message: 'WEBHOOK_ALLOWED_DESTINATIONS: "10.0.0.0/99" is not a CIDR'
  })
})
