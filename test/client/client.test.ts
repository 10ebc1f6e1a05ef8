import t from 'tap'
import { createGatewayClient } from '../../src/client/index.ts'
import { expectedError, makeTenant, startTestGateway } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'

t.test('the typed client against a gateway on the simulator', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 300 })
  const tenant = makeTenant('client')
  const { url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [tenant] })
  const client = createGatewayClient({ baseUrl: url, key: tenant.key })

  const created = await client.POST('/v1/videos/generations', { body: { model: 'veo-3.1-fast-generate-preview', prompt: 'A cat playing piano', duration: 4 } })
  t.equal(created.response.status, 200)
  t.match(created.data, { id: /^task-unified-/, status: 'pending', model: 'veo-3.1-fast-generate-preview' })
  t.equal(created.error, undefined)

  const read = await client.GET('/v1/tasks/{task_id}', { params: { path: { task_id: created.data?.id ?? '' } } })
  t.equal(read.response.status, 200)
  t.equal(read.data?.id, created.data?.id)

  // Errors come back typed as the one error format, not thrown.
  const refused = await client.POST('/v1/videos/generations', { body: { model: 'veo-3.1-fast-generate-preview', prompt: 'p', duration: 5 as 4 } })
  t.equal(refused.response.status, 400)
  t.equal(refused.data, undefined)
  t.match(refused.error, expectedError('invalid_request', 'invalid_request_error', /duration/, /.+/, 'duration'))

  const stranger = createGatewayClient({ baseUrl: url, key: 'vgk_not_a_key' })
  const unauthorized = await stranger.GET('/v1/usage')
  t.equal(unauthorized.response.status, 401)
  t.equal(unauthorized.error?.error.code, 'unauthorized')
})
