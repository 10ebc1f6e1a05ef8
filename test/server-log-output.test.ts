import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { makeTenant, testGatewaySecret } from './helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from './helpers/simulator.ts'
import { freePort, startServerProcess, type ServerProcess } from './helpers/server-process.ts'

// Logging is lossy, serving is not (issue 17 §2): whatever reads the gateway's stdout may stop
// reading or go away, and the gateway keeps answering, counts what it dropped, and shuts down on SIGTERM.

const metricsToken = 'metrics-token-0123456789abcdef'

async function gateway (t: Test, stdout: 'read' | 'unread'): Promise<{ server: ServerProcess, base: string, agent: Agent }> {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const port = await freePort()
  const server = startServerProcess(t, {
    PORT: String(port),
    HOST: '127.0.0.1',
    EVOLINK_API_KEY: TEST_UPSTREAM_KEY,
    EVOLINK_BASE_URL: upstream.url,
    TENANTS_FILE: 'tenants.json',
    GATEWAY_SECRET: testGatewaySecret,
    METRICS_TOKEN: metricsToken,
    LOG_LEVEL: 'info',
    LOG_BUFFER_BYTES: '16384',
    SHUTDOWN_DRAIN_MS: '0',
    SHUTDOWN_GRACE_MS: '10000'
  }, { 'tenants.json': JSON.stringify({ tenants: [acme.definition] }) }, { stdout })
  const agent = new Agent({ connections: 8 })
  t.teardown(async () => { await agent.destroy() })
  const base = `http://127.0.0.1:${port}`
  // Not from its output (which may be unread): it listens once /healthz answers.
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    const status = await request(`${base}/healthz`, { dispatcher: agent }).then(async (response) => { await response.body.dump(); return response.statusCode }, () => 0)
    if (status === 200) break
    await sleep(50)
  }
  return { server, base, agent }
}

async function droppedLines (base: string, agent: Agent): Promise<number> {
  const response = await request(`${base}/metrics`, { dispatcher: agent, headers: { authorization: `Bearer ${metricsToken}` } })
  const text = await response.body.text()
  const match = /^vg_log_lines_dropped_total (\d+)$/m.exec(text)
  if (match === null) throw new Error(`no vg_log_lines_dropped_total in /metrics (${response.statusCode})`)
  return Number(match[1])
}

/** Requests (each one an access-log line) until the gateway says it dropped log lines; bounded. */
async function logUntilDropped (base: string, agent: Agent): Promise<number> {
  for (let round = 0; round < 200; round++) {
    const statuses = await Promise.all(Array.from({ length: 50 }, async () => {
      const response = await request(`${base}/healthz`, { dispatcher: agent })
      await response.body.dump()
      return response.statusCode
    }))
    if (statuses.some((status) => status !== 200)) throw new Error(`/healthz answered ${statuses.join(',')}`)
    const dropped = await droppedLines(base, agent)
    if (dropped > 0) return dropped
  }
  return 0
}

async function healthz (base: string, agent: Agent): Promise<{ status: number, body: unknown }> {
  const response = await request(`${base}/healthz`, { dispatcher: agent })
  return { status: response.statusCode, body: await response.body.json() }
}

/** SIGTERM: its exit code, or 'still running' if it has not exited 10 s later (the grace period). */
async function terminate (server: ServerProcess): Promise<number | null | 'still running'> {
  server.child.kill('SIGTERM')
  const timeout = new AbortController()
  const result = await Promise.race([server.exited, sleep(10_000, 'still running' as const, { signal: timeout.signal }).catch(() => 'still running' as const)])
  timeout.abort()
  return result
}

t.test('stdout is a pipe that nobody reads: the gateway keeps serving, drops log lines (counted), and SIGTERM ends it with exit 0', async (t) => {
  const { server, base, agent } = await gateway(t, 'unread')
  t.equal((await healthz(base, agent)).status, 200, 'listening')
  const dropped = await logUntilDropped(base, agent)
  t.ok(dropped > 0, `log lines dropped once the pipe and the buffer were full (${dropped}), counted in vg_log_lines_dropped_total`)
  const after = await healthz(base, agent)
  t.same(after, { status: 200, body: { status: 'ok' } }, '/healthz still answers with stdout full')
  t.equal(await terminate(server), 0, 'SIGTERM: exit 0 within the grace period, although the log cannot be flushed')
})

t.test('stdout is closed by its reader (`| head -n 2`): the gateway keeps serving, and SIGTERM ends it with exit 0', async (t) => {
  const { server, base, agent } = await gateway(t, 'read')
  await server.waitFor(/Server listening/)
  // What `head -n 2` does once it has its lines: it exits, and the gateway's next write gets EPIPE.
  server.child.stdout!.destroy()
  const dropped = await logUntilDropped(base, agent)
  t.ok(dropped > 0, `log lines to the closed stdout are dropped and counted (${dropped})`)
  t.same(await healthz(base, agent), { status: 200, body: { status: 'ok' } }, '/healthz still answers')
  t.equal(await terminate(server), 0, 'SIGTERM: exit 0')
  t.notMatch(server.output(), /EPIPE|Error/, 'no crash on stderr')
})
