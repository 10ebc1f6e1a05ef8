import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool, request } from 'undici'
import { makeTenant, validBody } from './helpers/gateway.ts'
import { startTestSimulator } from './helpers/simulator.ts'
import { startGatewayProcess } from './helpers/server-process.ts'

interface Outcome { kind: 'create' | 'read', status: number, code?: string, retryAfter?: string, connection?: string, error?: string, sentAt: number, endedAt: number }

t.test('SIGTERM mid-load: a drain phase, then the close; keep-alive clients see no reset and no failure', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme', { rateLimit: { max: 1_000_000, timeWindow: 60_000 }, readRateLimit: { max: 1_000_000, timeWindow: 60_000 } })
  const { server, base } = await startGatewayProcess(t, { upstreamUrl: upstream.url, tenants: [acme.definition], env: { SHUTDOWN_DRAIN_MS: '1500', SHUTDOWN_GRACE_MS: '10000' } })

  // 16 kept-alive connections; undici honours `Connection: close` (it opens a new connection for the next request).
  const pool = new Pool(base, { connections: 16, pipelining: 1 })
  t.teardown(() => pool.destroy())
  const run = { stopped: false }
  const outcomes: Outcome[] = []

  const send = async (kind: Outcome['kind'], path: string, body?: string): Promise<Outcome & { id?: string }> => {
    const sentAt = Date.now()
    try {
      const response = await pool.request({
        path,
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: acme.authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body
      })
      const json = await response.body.json() as { id?: string, error?: { code?: string } }
      const header = (name: string): string | undefined => response.headers[name] as string | undefined
      return { kind, status: response.statusCode, code: json.error?.code, retryAfter: header('retry-after'), connection: header('connection'), id: json.id, sentAt, endedAt: Date.now() }
    } catch (error) {
      const failure = error as Error & { code?: string, cause?: { code?: string } }
      return { kind, status: 0, error: failure.cause?.code ?? failure.code ?? failure.message, sentAt, endedAt: Date.now() }
    }
  }
  const client = async (): Promise<void> => {
    while (!run.stopped) {
      const created = await send('create', '/v1/videos/generations', JSON.stringify(validBody))
      outcomes.push(created)
      if (created.status === 0) return // refused: the listener is closed
      if (created.id === undefined) continue
      const read = await send('read', `/v1/tasks/${created.id}`)
      outcomes.push(read)
      if (read.status === 0) return
    }
  }
  const clients = Array.from({ length: 16 }, async () => await client())

  // Mid-load: after some traffic on the kept-alive connections.
  while (outcomes.length < 200) await sleep(5)
  server.child.kill('SIGTERM')
  // The drain's bounds by the gateway's own clock (pino's `time`; same host): what was sent in between.
  const drainStart = Number((await server.waitFor(/"time":(\d+)[^\n]*shutting down: draining/))[1])
  const readyDuringDrain = await request(`${base}/readyz`)
  const readyBody = await readyDuringDrain.body.json()
  const drainEnd = Number((await server.waitFor(/"time":(\d+)[^\n]*drain over/))[1])
  const exitCode = await server.exited
  run.stopped = true
  await Promise.all(clients)

  t.equal(readyDuringDrain.statusCode, 503, '/readyz answers 503 during the drain')
  t.same(readyBody, { status: 'unavailable' }, 'in its usual shape')
  t.equal(exitCode, 0, 'the process exits 0 after the drain and the close')

  // Answered before the gateway logged the drain's end: served during the drain, by the gateway's clock.
  const drained = outcomes.filter((outcome) => outcome.sentAt > drainStart && outcome.endedAt < drainEnd)
  t.ok(drained.length > 0, 'requests were served during the drain')
  t.same(drained.filter((outcome) => outcome.status !== 200), [], 'every request answered during the drain got its normal answer')
  t.same(drained.filter((outcome) => outcome.connection !== 'close'), [], 'each with Connection: close')
  // Across the whole run: answered, or refused at connect (no work) once the listener closed; never reset.
  const failures = outcomes.filter((outcome) => outcome.status === 0 && outcome.error !== 'ECONNREFUSED' && outcome.endedAt < drainEnd)
  t.same(failures, [], 'no reset, no socket error until the drain ended')
  // Past it, a connection still in the kernel's accept queue when the listener closes is reset by the
  // kernel: node never accepted it, so no work began (a supervisor's load balancer has stopped sending by then).
  const resetAfterClose = outcomes.filter((outcome) => outcome.status === 0 && outcome.error !== 'ECONNREFUSED' && outcome.endedAt >= drainEnd)
  t.same(resetAfterClose.filter((outcome) => outcome.error !== 'ECONNRESET'), [], 'after it, only refused or never-accepted (reset) connections')
  const refused = outcomes.filter((outcome) => outcome.error === 'ECONNREFUSED')
  t.same(refused.filter((outcome) => outcome.endedAt < drainEnd), [], 'no refusal before the drain ended')
  const creates = outcomes.filter((outcome) => outcome.kind === 'create' && outcome.status !== 0)
  t.same(creates.filter((outcome) => !(outcome.status === 200 || outcome.status === 201 || (outcome.status === 503 && outcome.code === 'shutting_down' && outcome.retryAfter !== undefined))), [],
    'every answered create is a success or a clean 503 shutting_down with Retry-After')
  const reads = outcomes.filter((outcome) => outcome.kind === 'read' && outcome.status !== 0)
  t.same(reads.filter((outcome) => !(outcome.status === 200 || (outcome.status === 503 && outcome.code === 'shutting_down'))), [], 'every answered read is a success or a clean 503 shutting_down')
  t.match(server.output(), /shut down cleanly/, 'the graceful-shutdown log lines are written')
  t.comment(`${outcomes.length} requests; ${drained.length} during the drain; ${refused.length} refused at connect and ${resetAfterClose.length} never accepted (reset by the kernel) after the close`)
})

t.test('a second SIGTERM (process group) does not cut the drain short nor lose log lines', async (t) => {
  const upstream = await startTestSimulator(t)
  const { server, base } = await startGatewayProcess(t, { upstreamUrl: upstream.url, tenants: [makeTenant('acme').definition], env: { SHUTDOWN_DRAIN_MS: '1000' } })
  server.child.kill('SIGTERM')
  await server.waitFor(/shutting down: draining/)
  server.child.kill('SIGTERM')
  await server.waitFor(/signal received again/)
  const ready = await request(`${base}/readyz`)
  await ready.body.dump()
  t.equal(ready.statusCode, 503, 'still serving (draining) after the second signal')
  t.equal(await server.exited, 0, 'exits 0, not 1')
  t.match(server.output(), /drain over[\s\S]*shut down cleanly/, 'every shutdown line is in the log')
})
