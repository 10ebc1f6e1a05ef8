/**
 * Abusive clients against the REAL server process (node src/server.ts), over
 * loopback raw sockets. Two server processes, both against a test simulator
 * (EVOLINK_BASE_URL) whose calls are counted: one takes the slow and idle
 * clients, the other the connection flood and the unauthenticated flood.
 *
 * What is bounded, and by what (set in src/server.ts from the environment):
 * - Slow headers (slowloris) and connections that send nothing:
 *   SERVER_HEADERS_TIMEOUT_MS (1 s here).
 * - A body dribbled after complete headers: SERVER_REQUEST_TIMEOUT_MS (2 s here).
 * - Idle keep-alive connections after a response: SERVER_KEEP_ALIVE_TIMEOUT_MS
 *   (1 s here) plus Node 24's keepAliveTimeoutBuffer (1 s).
 * - Connections at once: SERVER_MAX_CONNECTIONS (300 for the flood test);
 *   Node accepts and at once closes the excess.
 * - Requests without a valid key: UNAUTHENTICATED_RATE_LIMIT_MAX per client IP
 *   (20 here); they never reach the upstream.
 * Node enforces the headers and request timeouts only when its connections
 * check runs, every `connectionsCheckingInterval`: 30 s by default, 1 s as
 * src/app.ts sets it, so a slow client is closed between its timeout and the
 * timeout + 1 s.
 * And by this test: socket counts fixed up front and kept under a quarter of
 * `ulimit -n`; every dribble and probe loop bounded in count and in time;
 * child processes killed by pid at teardown.
 */
import t from 'tap'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { Client, Pool } from 'undici'
import { makeTenant, testGatewaySecret, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import {
  countBy, errorAnswerProblems, ms, openFileLimit, outcomeOf, percentile,
  startGatewayProcess, waitUntil, type Answer, type GatewayProcess
} from './support.ts'

const HEADERS_TIMEOUT_MS = 1000
const REQUEST_TIMEOUT_MS = 2000
const KEEP_ALIVE_TIMEOUT_MS = 1000
/** Node 24 keeps an idle keep-alive socket this much longer than keepAliveTimeout (http.Server keepAliveTimeoutBuffer). */
const NODE_KEEP_ALIVE_BUFFER_MS = 1000
/** Node's default http.Server connectionsCheckingInterval; src/server.ts does not set it. */
const NODE_CHECK_INTERVAL_MS = 1000
const FLOOD_MAX_CONNECTIONS = 300
const UNAUTHENTICATED_MAX = 20

const fileLimit = openFileLimit()
/** Idle connections: many, but at most a quarter of the fd limit (each one is an fd here and one in the server). */
const IDLE_SOCKETS = Math.min(1500, Math.floor(fileLimit / 4))
const SLOWLORIS_SOCKETS = 50
const DRIBBLED_BODIES = 20

/** A raw TCP connection and what happened to it. */
interface Raw {
  socket: Socket
  openedAt: number
  connectedAt: number | null
  closedAt: number | null
  closedByUs: boolean
  received: string
  closed: Promise<void>
}

function openRaw (port: number): Raw {
  const socket = connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  const raw: Raw = { socket, openedAt: performance.now(), connectedAt: null, closedAt: null, closedByUs: false, received: '', closed: Promise.resolve() }
  socket.on('connect', () => { raw.connectedAt = performance.now() })
  socket.on('data', (chunk: Buffer) => { if (raw.received.length < 2048) raw.received += chunk.toString('latin1') })
  socket.on('error', () => {})
  raw.closed = new Promise((resolve) => socket.once('close', () => {
    raw.closedAt = performance.now()
    resolve()
  }))
  return raw
}

function closeRaw (raws: readonly Raw[]): void {
  for (const raw of raws) {
    if (raw.closedAt === null) raw.closedByUs = true
    raw.socket.destroy()
  }
}

/** Opens `count` raw connections, `batch` at a time, each batch waiting (bounded) for its handshakes. */
async function openMany (port: number, count: number, batch = 250): Promise<Raw[]> {
  const raws: Raw[] = []
  for (let i = 0; i < count; i += batch) {
    const these = Array.from({ length: Math.min(batch, count - i) }, () => openRaw(port))
    raws.push(...these)
    await waitUntil(() => these.every((r) => r.connectedAt !== null || r.closedAt !== null), 3000, 10)
  }
  return raws
}

const lifetimes = (raws: readonly Raw[]): number[] => raws.filter((r) => r.closedAt !== null).map((r) => (r.closedAt as number) - r.openedAt)
const summary = (values: readonly number[]): string =>
  values.length === 0 ? 'none' : `min ${ms(Math.min(...values))}, p50 ${ms(percentile(values, 50))}, max ${ms(Math.max(...values))}`
const statusLine = (raw: Raw): string => raw.received.split('\r\n')[0] ?? ''

/** What the server wrote on a raw connection, as an Answer (null if not a whole head). */
function rawAnswer (raw: Raw): Answer | null {
  const end = raw.received.indexOf('\r\n\r\n')
  if (end === -1) return null
  const [first = '', ...lines] = raw.received.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { statusCode: Number(first.split(' ')[1]), headers, body: raw.received.slice(end + 4), ms: 0 }
}

async function get (dispatcher: Client | Pool, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const started = performance.now()
  const response = await dispatcher.request({ method: 'GET', path, headers, headersTimeout: 5000, bodyTimeout: 5000 })
  return { statusCode: response.statusCode, headers: response.headers, body: await response.body.text(), ms: performance.now() - started }
}

async function post (dispatcher: Client | Pool, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const started = performance.now()
  const response = await dispatcher.request({ method: 'POST', path, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), headersTimeout: 5000, bodyTimeout: 5000 })
  return { statusCode: response.statusCode, headers: response.headers, body: await response.body.text(), ms: performance.now() - started }
}

t.test('abusive clients against the real server', async (t) => {
  const testStarted = performance.now()
  // One simulator per server, so that the upstream calls of each are counted apart.
  const [upstream, slowUpstream] = await Promise.all([startTestSimulator(t, { taskDurationMs: 600_000 }), startTestSimulator(t, { taskDurationMs: 600_000 })])
  const tenant = makeTenant('abuse', { rateLimit: { max: 1000, timeWindow: 60_000 } })
  const cwd = t.testdir({ 'tenants.json': JSON.stringify({ tenants: [tenant.definition] }) })
  const bounds = {
    SERVER_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
    SERVER_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    SERVER_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS),
    LOG_LEVEL: 'info'
  }
  // Two servers, started together, both against a test simulator whose calls
  // can be counted (EVOLINK_BASE_URL; no embedded simulator): `slow` for slow
  // and idle clients (room for the idle sockets), `guarded` for the connection
  // flood (SERVER_MAX_CONNECTIONS 300) and unauthenticated floods.
  const upstreamEnv = {
    EVOLINK_API_KEY: TEST_UPSTREAM_KEY,
    TENANTS_FILE: join(cwd, 'tenants.json'),
    GATEWAY_SECRET: testGatewaySecret
  }
  const [slow, guarded] = await Promise.all([
    startGatewayProcess(t, cwd, { ...bounds, ...upstreamEnv, EVOLINK_BASE_URL: slowUpstream.url, SERVER_MAX_CONNECTIONS: '5000' }),
    startGatewayProcess(t, cwd, { ...bounds, ...upstreamEnv, EVOLINK_BASE_URL: upstream.url, SERVER_MAX_CONNECTIONS: String(FLOOD_MAX_CONNECTIONS), UNAUTHENTICATED_RATE_LIMIT_MAX: String(UNAUTHENTICATED_MAX) })
  ]) as [GatewayProcess, GatewayProcess]
  const listeningAt = performance.now()
  t.comment(`ulimit -n ${fileLimit}; two server processes listening ${ms(listeningAt - testStarted)} after the test started`)

  // Slow clients on `slow`, opened first: they are checked at the end, so the
  // other tests run while Node's connections check comes round.
  const slowloris = Array.from({ length: SLOWLORIS_SOCKETS }, () => openRaw(slow.port))
  for (const raw of slowloris) raw.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n')
  const dribbled = Array.from({ length: DRIBBLED_BODIES }, () => openRaw(slow.port))
  for (const raw of dribbled) {
    raw.socket.write(`POST /v1/videos/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${tenant.authorization}\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"model":`)
  }
  // One header line (slowloris) or one body byte (dribble) per socket every 250 ms; stops when they close, or at the bound.
  const dribbleUntil = performance.now() + REQUEST_TIMEOUT_MS + NODE_CHECK_INTERVAL_MS + 5000
  let line = 0
  const dribbler = setInterval(() => {
    line += 1
    if (performance.now() > dribbleUntil) clearInterval(dribbler)
    for (const raw of slowloris) if (raw.closedAt === null) raw.socket.write(`X-Slow-${line}: 1\r\n`)
    for (const raw of dribbled) if (raw.closedAt === null) raw.socket.write(' ')
  }, 250)
  const idle = await openMany(slow.port, IDLE_SOCKETS)
  // And one keep-alive connection that asks once, then stays idle.
  const keepAlive = openRaw(slow.port)
  keepAlive.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  let answeredAt = Number.NaN
  keepAlive.socket.on('data', () => { if (Number.isNaN(answeredAt)) answeredAt = performance.now() })
  t.teardown(() => {
    clearInterval(dribbler)
    closeRaw([...slowloris, ...dribbled, ...idle, keepAlive])
  })
  const openedAt = performance.now()
  t.comment(`slow server: ${SLOWLORIS_SOCKETS} slowloris, ${DRIBBLED_BODIES} dribbled bodies, ${idle.length} idle connections (${idle.filter((r) => r.connectedAt !== null).length} connected) opened ${ms(openedAt - listeningAt)} after it listened`)

  // A normal client on the same server while the slow clients are there: /healthz
  // every 100 ms (at least 10 times), and one create and one read; until the
  // last slow socket is closed, or the bound.
  const normalClient = (async () => {
    const normal = new Client(slow.url, { pipelining: 1 })
    const all = [...slowloris, ...dribbled, ...idle]
    const bound = REQUEST_TIMEOUT_MS + NODE_CHECK_INTERVAL_MS + 3000
    const health: Answer[] = []
    const failures: string[] = []
    let created: Answer | undefined
    for (let i = 0; i < 500 && (i < 10 || all.some((r) => r.closedAt === null)) && performance.now() - openedAt < bound; i++) {
      try {
        health.push(await get(normal, '/healthz'))
        if (i === 5) {
          created = await post(normal, '/v1/videos/generations', validBody, { authorization: tenant.authorization })
          const id = (JSON.parse(created.body) as { id?: string }).id
          if (id !== undefined) health.push(await get(normal, `/v1/tasks/${id}`, { authorization: tenant.authorization }))
        }
      } catch (error) {
        failures.push((error as Error).message)
      }
      await sleep(100)
    }
    await normal.close()
    return { health, failures, created }
  })()

  await t.test('a connection flood above SERVER_MAX_CONNECTIONS: the excess is closed, the server stays up and answers once it ends', async (t) => {
    const count = FLOOD_MAX_CONNECTIONS + 100
    const floodSockets = await openMany(guarded.port, count, 100)
    t.teardown(() => closeRaw(floodSockets))
    await sleep(300)
    const dropped = floodSockets.filter((r) => r.closedAt !== null)
    const held = floodSockets.filter((r) => r.closedAt === null)
    t.ok(held.length <= FLOOD_MAX_CONNECTIONS, `at most ${FLOOD_MAX_CONNECTIONS} held open (${held.length})`)
    t.ok(dropped.length >= count - FLOOD_MAX_CONNECTIONS - 5, `the excess was closed at once (${dropped.length} of ${count})`)
    t.ok(dropped.every((r) => r.received === ''), 'closed without an answer (dropped at the socket)')

    // Meanwhile a well-behaved client has no slot either: that is what the bound means.
    let during = 'answered'
    const probe = new Client(guarded.url, { pipelining: 1 })
    try {
      const answer = await get(probe, '/healthz')
      during = `answered ${answer.statusCode}`
    } catch (error) {
      during = `refused (${(error as { code?: string }).code ?? (error as Error).message})`
    } finally {
      await probe.destroy()
    }

    const floodEnded = performance.now()
    closeRaw(floodSockets)
    const health = new Client(guarded.url, { pipelining: 1 })
    t.teardown(() => health.destroy())
    let recoveredAfter = Number.NaN
    const recovered = await (async () => {
      for (let i = 0; i < 100 && performance.now() - floodEnded < 5000; i++) {
        try {
          if ((await get(health, '/healthz')).statusCode === 200) {
            recoveredAfter = performance.now() - floodEnded
            return true
          }
        } catch {}
        await sleep(50)
      }
      return false
    })()
    t.equal(guarded.child.exitCode, null, 'the server process is still up')
    t.ok(recovered, `it answers /healthz once the flood ends (after ${ms(recoveredAfter)})`)
    t.comment(`flood: ${count} connections, ${held.length} held, ${dropped.length} closed at once (${summary(lifetimes(dropped))} after opening); a normal /healthz during the flood: ${during}; answered again ${ms(recoveredAfter)} after the flood ended`)
  })

  await t.test('unauthenticated floods are limited per IP and cost no upstream call', async (t) => {
    const pool = new Pool(guarded.url, { connections: 10, pipelining: 1 })
    t.teardown(() => pool.destroy())
    const count = 60
    const callsBefore = { create: upstream.simulator.calls.create, task: upstream.simulator.calls.task }
    const answers = await Promise.all(Array.from({ length: count }, (_, i) => {
      const headers: Record<string, string> = i % 3 === 2 ? {} : { authorization: `Bearer vgk_wrong_${i}_${'x'.repeat(20)}` }
      return i % 2 === 0
        ? post(pool, '/v1/videos/generations', validBody, headers)
        : get(pool, '/v1/tasks/task-unified-1757169743-abcdefgh.AAAAAAAAAAAAAAAAAAAAAA', headers)
    }))
    t.same(countBy(answers, outcomeOf), { rate_limit_exceeded: count - UNAUTHENTICATED_MAX, unauthorized: UNAUTHENTICATED_MAX },
      `${UNAUTHENTICATED_MAX} × 401, then 429 for the rest (one counter per IP, whatever the route)`)
    const problems = answers.flatMap((a) => errorAnswerProblems(a, outcomeOf(a) as 'unauthorized' | 'rate_limit_exceeded'))
    t.same([...new Set(problems)], [], 'every answer in the one format, with its row')
    const limited = answers.filter((a) => a.statusCode === 429)
    t.ok(limited.every((a) => /^\d+$/.test(String(a.headers['retry-after']))), '429s carry Retry-After')
    const floodCalls = { create: upstream.simulator.calls.create - callsBefore.create, task: upstream.simulator.calls.task - callsBefore.task }
    t.same(floodCalls, { create: 0, task: 0 }, 'no upstream call was made for any of them')

    // The same IP with a valid key is not locked out: the limit is on guessing, not on the address.
    const created = await post(pool, '/v1/videos/generations', validBody, { authorization: tenant.authorization })
    t.equal(created.statusCode, 200, 'a valid tenant from the same IP still creates')
    const id = (JSON.parse(created.body) as { id: string }).id
    t.equal((await get(pool, `/v1/tasks/${id}`, { authorization: tenant.authorization })).statusCode, 200, 'and reads')
    t.same({ create: upstream.simulator.calls.create - callsBefore.create, task: upstream.simulator.calls.task - callsBefore.task }, { create: 1, task: 1 },
      'exactly those two reached the upstream')
    t.notMatch(guarded.output(), TEST_UPSTREAM_KEY, 'the upstream key is in no line the server printed')
    t.notMatch(guarded.output(), tenant.key, 'nor the tenant key')
    t.comment(`unauthenticated flood: ${count} requests from one IP, ${JSON.stringify(countBy(answers, outcomeOf))}, upstream calls ${JSON.stringify(floodCalls)}; then the valid tenant from the same IP: 200, 200`)
  })

  await t.test('slowloris, dribbled bodies and idle connections are closed by the timeouts; normal clients keep getting answers', async (t) => {
    const { health, failures, created } = await normalClient
    // The probe stops when the last slow socket closes (or at the bound).
    const waited = performance.now() - openedAt

    const slowLives = lifetimes(slowloris)
    const dribbleLives = lifetimes(dribbled)
    const idleLives = lifetimes(idle)
    t.comment(`waited ${ms(waited)}; the server closed: slowloris ${slowLives.length}/${slowloris.length} (${summary(slowLives)} after opening), ` +
      `dribbled bodies ${dribbleLives.length}/${dribbled.length} (${summary(dribbleLives)}), idle ${idleLives.length}/${idle.length} (${summary(idleLives)}); ` +
      `first check ${ms(NODE_CHECK_INTERVAL_MS)} after listening = ${ms(listeningAt + NODE_CHECK_INTERVAL_MS - openedAt)} after the sockets opened`)
    t.comment(`answers: slowloris ${JSON.stringify(countBy(slowloris, statusLine))}, dribbled ${JSON.stringify(countBy(dribbled, statusLine))}, idle ${JSON.stringify(countBy(idle, statusLine))}`)
    t.comment(`normal client meanwhile: ${health.length} answers, ${JSON.stringify(countBy(health, (a) => String(a.statusCode)))}, p50 ${ms(percentile(health.map((a) => a.ms), 50))}, p99 ${ms(percentile(health.map((a) => a.ms), 99))}, max ${ms(Math.max(...health.map((a) => a.ms)))}; failures ${failures.length}`)

    t.equal(slowLives.length, slowloris.length, 'every slowloris connection was closed by the server')
    t.equal(dribbleLives.length, dribbled.length, 'every dribbled body was closed by the server')
    t.equal(idleLives.length, idle.length, 'every idle connection was closed by the server')
    t.ok(Math.min(...slowLives, ...idleLives) >= HEADERS_TIMEOUT_MS - 100, 'none before SERVER_HEADERS_TIMEOUT_MS')
    t.ok(Math.min(...dribbleLives) >= REQUEST_TIMEOUT_MS - 100, 'no dribbled body before SERVER_REQUEST_TIMEOUT_MS')
    t.ok(Math.max(...slowLives, ...idleLives) < HEADERS_TIMEOUT_MS + NODE_CHECK_INTERVAL_MS + 2000, 'slow headers and idle: within the headers timeout + one connections check')
    t.ok(Math.max(...dribbleLives) < REQUEST_TIMEOUT_MS + NODE_CHECK_INTERVAL_MS + 2000, 'dribbled bodies: within the request timeout + one connections check')
    t.ok(Math.max(...slowLives, ...idleLives) < HEADERS_TIMEOUT_MS + 2000, 'slow headers and idle: within the headers timeout + 2 s')
    t.ok(Math.max(...dribbleLives) < REQUEST_TIMEOUT_MS + 2000, 'dribbled bodies: within the request timeout + 2 s')
    const told = [...slowloris, ...dribbled, ...idle].flatMap((r) => {
      const answer = rawAnswer(r)
      return answer === null ? [`no answer: ${JSON.stringify(r.received.slice(0, 100))}`] : errorAnswerProblems(answer, 'request_timeout')
    })
    t.same([...new Set(told)], [], 'each was told 408 request_timeout, in the one error format, before the close')
    t.comment(`the 408: ${JSON.stringify(rawAnswer(slowloris[0] as Raw)?.body)}`)

    t.ok(health.length >= 10, `the normal client was answered ${health.length} times meanwhile`)
    t.same(failures, [], 'the normal client never failed')
    t.equal(created?.statusCode, 200, 'it created a task meanwhile')
    t.same(countBy(health, (a) => String(a.statusCode)), { 200: health.length }, 'and every probe answered 200')
    // A liveness bound (the abusers never stall the server), not a speed figure (npm run bench
    // measures speed): 500 ms failed once on the shared 2-core VM with one probe of 16 at 561 ms.
    t.ok(percentile(health.map((a) => a.ms), 99) < 2000, 'its p99 stayed below 2 s')
    t.equal(slow.child.exitCode, null, 'the server process is still up')
  })

  await t.test('an idle keep-alive connection is closed after SERVER_KEEP_ALIVE_TIMEOUT_MS (+ Node\'s 1 s buffer)', async (t) => {
    // Opened with the slow clients above; long closed by now.
    await waitUntil(() => keepAlive.closedAt !== null, KEEP_ALIVE_TIMEOUT_MS + NODE_KEEP_ALIVE_BUFFER_MS + 3000, 10)
    const idleFor = (keepAlive.closedAt ?? Number.NaN) - answeredAt
    t.equal(statusLine(keepAlive), 'HTTP/1.1 200 OK')
    t.match(keepAlive.received, /keep-alive: timeout=1\b/i, 'the server announces its keep-alive timeout')
    t.notOk(keepAlive.closedByUs, 'the server closed it')
    t.ok(idleFor >= KEEP_ALIVE_TIMEOUT_MS - 50 && idleFor < KEEP_ALIVE_TIMEOUT_MS + NODE_KEEP_ALIVE_BUFFER_MS + 1000, `closed ${ms(idleFor)} after the answer`)
    t.comment(`keep-alive: closed ${ms(idleFor)} after the answer (SERVER_KEEP_ALIVE_TIMEOUT_MS ${KEEP_ALIVE_TIMEOUT_MS} + Node's buffer ${NODE_KEEP_ALIVE_BUFFER_MS})`)
  })
})
