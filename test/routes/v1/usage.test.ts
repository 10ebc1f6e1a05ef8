import t from 'tap'
import { buildTestApp, makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

const zero = { requests: 0, tasks_created: 0, tasks_completed: 0, tasks_failed: 0, video_seconds: 0, credits: 0, archived_videos: 0, archived_bytes: 0 }

t.test('GET /v1/usage', async (t) => {
  let clock = Date.UTC(2026, 5, 15, 12, 0, 0)
  const now = () => clock
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000, now })
  const acme = makeTenant('acme')
  const globex = makeTenant('globex')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex], seams: { clock: now } })
  const call = (tenant: TestTenant, method: 'GET' | 'POST', url: string, payload?: Record<string, unknown>) =>
    app.inject({ method, url, headers: { authorization: tenant.authorization }, payload })
  const usage = async (tenant: TestTenant, query = '') => await call(tenant, 'GET', `/v1/usage${query}`)

  // Day one (June 15): two creates (one will fail), an invalid request; day two (June 16): both seen finished.
  const completes = (await call(acme, 'POST', '/v1/videos/generations', { ...validBody, n: 2, duration: 8, quality: '1080p' })).json().id as string
  const fails = (await call(acme, 'POST', '/v1/videos/generations', { ...validBody, prompt: 'A storm [fail:service_error]' })).json().id as string
  t.equal((await call(acme, 'POST', '/v1/videos/generations', { ...validBody, n: 9 })).statusCode, 400)
  clock += 12 * 3_600_000
  t.equal((await call(acme, 'GET', `/v1/tasks/${completes}`)).json().status, 'completed')
  t.equal((await call(acme, 'GET', `/v1/tasks/${completes}?wait=1`)).json().status, 'completed')
  t.equal((await call(acme, 'GET', `/v1/tasks/${fails}/events`)).statusCode, 200)
  t.equal((await call(acme, 'GET', `/v1/tasks/${fails}`)).json().status, 'failed')

  t.test('per UTC day, each finished task counted once, however often it was read', async (t) => {
    const response = await usage(acme, '?from=2026-06-14&to=2026-06-16')
    t.equal(response.statusCode, 200)
    t.equal(response.headers['cache-control'], 'private, no-store')
    t.same(response.json(), {
      object: 'usage',
      tenant: acme.id,
      from: '2026-06-14',
      to: '2026-06-16',
      data: [
        { date: '2026-06-14', ...zero },
        // 8 s × 2 of 1080p with audio: 48 credits; 4 s of 720p with audio: 9.6.
        { date: '2026-06-15', ...zero, requests: 3, tasks_created: 2, video_seconds: 20, credits: 57.6 },
        // This request is counted before it is answered.
        { date: '2026-06-16', ...zero, requests: 5, tasks_completed: 1, tasks_failed: 1 }
      ],
      total: { requests: 8, tasks_created: 2, tasks_completed: 1, tasks_failed: 1, video_seconds: 20, credits: 57.6, archived_videos: 0, archived_bytes: 0 }
    })
  })

  t.test('no tenant sees another\'s usage', async (t) => {
    const response = await usage(globex, '?from=2026-06-15&to=2026-06-16')
    t.same(response.json(), { object: 'usage', tenant: globex.id, from: '2026-06-15', to: '2026-06-16', data: [{ date: '2026-06-15', ...zero }, { date: '2026-06-16', ...zero, requests: 1 }], total: { ...zero, requests: 1 } })
  })

  t.test('default: the last 30 days, today included', async (t) => {
    const body = (await usage(acme)).json()
    t.equal(body.from, '2026-05-18')
    t.equal(body.to, '2026-06-16')
    t.equal(body.data.length, 30)
    t.equal((await usage(acme, '?to=2026-06-15')).json().from, '2026-05-17', '`to` alone: the 30 days up to it')
  })

  t.test('the range is validated', async (t) => {
    assertErrorResponse(t, await usage(acme, '?from=2026-06-16&to=2026-06-15'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: '"from" is after "to".', param: 'from' })
    assertErrorResponse(t, await usage(acme, '?from=2026-02-30'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: '"from" is not a calendar day: 2026-02-30.', param: 'from' })
    assertErrorResponse(t, await usage(acme, '?from=2025-06-15&to=2026-06-16'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: 'The range may span at most 366 days.', param: 'from' })
    t.equal((await usage(acme, '?from=2025-06-16&to=2026-06-16')).json().data.length, 366, '366 days is allowed')
    assertErrorResponse(t, await usage(acme, '?to=June'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: /^"to" must match pattern/, param: 'to' })
    assertErrorResponse(t, await usage(acme, '?tenant=globex'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: 'Unknown field "tenant": check its spelling.', param: 'tenant' })
  })

  t.test('a key is required', async (t) => {
    const response = await app.inject({ method: 'GET', url: '/v1/usage' })
    t.equal(response.statusCode, 401)
  })
})
