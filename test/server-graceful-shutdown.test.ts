import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { makeTenant, validBody } from './helpers/gateway.ts'
import { startTestSimulator } from './helpers/simulator.ts'
import { startGatewayProcess } from './helpers/server-process.ts'

t.test('SIGTERM under load: every accepted request gets its real answer, then exit 0', async (t) => {
  // The upstream: a test simulator whose creates take 1.5 s, so that the signal lands mid-flight.
  const upstream = await startTestSimulator(t)
  upstream.simulator.faults.push({ route: 'create', delayMs: 1500, times: Infinity })
  const acme = makeTenant('acme', { rateLimit: { max: 1000, timeWindow: 60_000 } })
  const { server, base } = await startGatewayProcess(t, {
    upstreamUrl: upstream.url,
    tenants: [acme.definition],
    // No drain phase here: this test is about the close that follows it (test/server-drain.test.ts has the drain).
    env: { SHUTDOWN_GRACE_MS: '10000', SHUTDOWN_DRAIN_MS: '0' }
  })
  // One connection per request, as many clients would have.
  const agent = new Agent({ connections: null, pipelining: 1 })
  t.teardown(() => agent.close())
  const inFlight = 16
  const answers = Array.from({ length: inFlight }, () => request(`${base}/v1/videos/generations`, {
    dispatcher: agent,
    method: 'POST',
    headers: { authorization: acme.authorization, 'content-type': 'application/json' },
    body: JSON.stringify(validBody)
  }).then(async (response) => ({ status: response.statusCode, body: await response.body.json() as { id?: string } }),
    (error: Error & { code?: string }) => ({ status: 0, body: {} as { id?: string }, error: error.code ?? error.message })))

  // All accepted and forwarded (each is waiting on the slow upstream): now the signal.
  const deadline = Date.now() + 10_000
  while (upstream.simulator.calls.create < inFlight && Date.now() < deadline) await sleep(10)
  t.equal(upstream.simulator.calls.create, inFlight, `${inFlight} requests in flight`)
  const signalled = Date.now()
  server.child.kill('SIGTERM')

  await server.waitFor(/drain over/)
  const refused = await request(`${base}/healthz`).then((response) => response.statusCode, (error: Error & { code?: string }) => error.code)
  t.equal(refused, 'ECONNREFUSED', 'new connections are refused once the shutdown began')

  const results = await Promise.all(answers)
  t.same(results.map((result) => result.status), Array(inFlight).fill(200), 'every accepted request completed with 200')
  t.ok(results.every((result) => typeof result.body.id === 'string' && result.body.id.startsWith('task-unified-')), 'with its real answer (a task)')
  t.notOk(results.some((result) => 'error' in result), 'none was reset')
  t.equal(await server.exited, 0, 'the process exits 0')
  const shutdownMs = Date.now() - signalled
  t.ok(shutdownMs < 10_000, 'within SHUTDOWN_GRACE_MS')
  t.comment(`${inFlight} requests in flight at SIGTERM: ${results.filter((result) => result.status === 200).length} answered 200; exit 0 after ${shutdownMs} ms`)
})
