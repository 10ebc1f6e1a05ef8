import t from 'tap'
import { Agent, request } from 'undici'
import { startSimulator } from '../../src/simulator/start.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'

const AUTH = { authorization: `Bearer ${TEST_UPSTREAM_KEY}` }

t.test('startSimulator listens on 127.0.0.1, a free port', async (t) => {
  const started = await startSimulator({ apiKey: 'sk-evo-a' })
  t.teardown(started.close)
  t.match(started.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal(started.apiKey, 'sk-evo-a')
  const other = await startSimulator({ apiKey: 'sk-evo-b', port: 0 })
  t.teardown(other.close)
  t.not(other.url, started.url)
  const res = await request(`${started.url}/v1/tasks/task-unified-1-abcdefgh`, { headers: { authorization: 'Bearer sk-evo-a' } })
  t.equal(res.statusCode, 404)
  await res.body.dump()
})

t.test('close is idempotent and works unbound', async (t) => {
  const { close, simulator } = await startSimulator({ apiKey: 'k' })
  const closeRef = close
  await Promise.all([closeRef(), closeRef()])
  await closeRef()
  t.notOk(simulator.app.server.listening)
})

t.test('a taken port is an error, not a leak', async (t) => {
  const first = await startSimulator({ apiKey: 'k' })
  t.teardown(first.close)
  const port = Number(new URL(first.url).port)
  await t.rejects(startSimulator({ apiKey: 'k', port }), { code: 'EADDRINUSE' })
})

t.test('close() finishes with hung, half-sent, delayed and idle keep-alive connections open', async (t) => {
  const started = await startTestSimulator(t)
  const { url, simulator } = started
  const agent = new Agent({ keepAliveTimeout: 60_000 })
  t.teardown(() => agent.destroy())
  // an idle keep-alive connection
  const warm = await request(`${url}/v1/tasks/task-unified-1-abcdefgh`, { headers: AUTH, dispatcher: agent })
  await warm.body.dump()

  simulator.faults.push({ route: 'task', hang: true, times: 2 })
  simulator.faults.push({ route: 'create', bodyNeverEnds: true })
  simulator.faults.push({ route: 'create', delayMs: 600_000 })
  const task = () => request(`${url}/v1/tasks/task-unified-1-abcdefgh`, { headers: AUTH, dispatcher: agent })
  const create = () => request(`${url}/v1/videos/generations`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: '{}', dispatcher: agent })
  const calls = [task(), task(), create(), create()]
  for (const p of calls) p.catch(() => {})
  for (let i = 0; i < 400 && (simulator.calls.task < 3 || simulator.calls.create < 2); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  t.equal(simulator.calls.task, 3)
  t.equal(simulator.calls.create, 2)

  const began = performance.now()
  await started.close()
  const took = performance.now() - began
  t.ok(took < 5000, `close took ${Math.round(took)} ms`)
  const outcomes = await Promise.allSettled(calls)
  t.equal(outcomes.filter((o) => o.status === 'rejected').length >= 3, true, 'hung calls end with errors')
})

t.test('importing server.ts starts nothing', async (t) => {
  const before = process.listenerCount('SIGINT')
  const mod = await import('../../src/simulator/server.ts')
  t.type(mod.main, 'function')
  t.equal(process.listenerCount('SIGINT'), before)
})

t.test('server main() reads the environment', async (t) => {
  const { main } = await import('../../src/simulator/server.ts')
  const listeners = () => [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]
  const before = listeners()
  const started = await main({ SIMULATOR_PORT: '0', SIMULATOR_API_KEY: 'sk-evo-env', SIMULATOR_TASK_DURATION_MS: '0', LOG_LEVEL: 'silent' })
  t.teardown(started.close)
  t.strictSame(listeners(), before.map((n) => n + 1), 'SIGINT and SIGTERM handled')
  t.match(started.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal(started.apiKey, 'sk-evo-env')
  const res = await request(`${started.url}/v1/videos/generations`, {
    method: 'POST', headers: { authorization: 'Bearer sk-evo-env', 'content-type': 'application/json' }, body: JSON.stringify({ model: 'veo-3.1-fast-generate-preview', prompt: 'x' })
  })
  const body = await res.body.json() as { id: string, task_info: { estimated_time: number } }
  t.equal(res.statusCode, 200)
  t.equal(body.task_info.estimated_time, 0)
  await t.rejects(main({ SIMULATOR_PORT: 'eighty' }), /SIMULATOR_PORT must be a non-negative integer/)
  await started.close()
  t.strictSame(listeners(), before, 'close() drops the signal handlers')
})
