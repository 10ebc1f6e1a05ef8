/**
 * Upstream faults under load: listening gateways (startTestGateway) against a
 * listening simulator, hundreds of requests in flight through a dedicated
 * undici Agent, faults injected in shuffled mixes.
 *
 * What is bounded, and by what (gateway side):
 * - One upstream call, headers and body: UPSTREAM_TIMEOUT_MS, through undici's
 *   headersTimeout and bodyTimeout plus the gateway's own deadline check while
 *   reading the body (latency spikes, hangs, bodies that never end). 500 ms for
 *   the connect, chunked-body and lone 50 MB tests; 2 s for the fault mix and
 *   1-2 s for the hang tests, so that hundreds of calls hang at once without
 *   this one process's CPU time (client, gateway and simulator share it)
 *   deciding the outcomes.
 * - What is read of an upstream body: UPSTREAM_MAX_RESPONSE_BYTES (64 KiB),
 *   from Content-Length before reading (the simulator's 50 MB body) and counted
 *   while reading (a 50 MB chunked body without Content-Length).
 * - A TCP connect that never completes: undici's connect timeout,
 *   min(10 s, UPSTREAM_TIMEOUT_MS).
 * - Upstream calls in flight: UPSTREAM_CONNECTIONS (default 128) per pool, one
 *   pool for creates and one for task reads (hanging creates never starve reads).
 *   Calls beyond it wait in undici's pool queue; that wait counts against
 *   UPSTREAM_TIMEOUT_MS (an abort signal per attempt).
 * And by this test: fixed request counts, every loop bounded in count and in
 * time; RSS growth (after a forced GC, from a warm baseline) under 200 MiB,
 * heap in use under 64 MiB more; TCP handles back to the baseline at the end.
 */
import t from 'tap'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Agent, request } from 'undici'
import type { Test } from 'tap'
import { startTestGateway, makeTenant, logCollector, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import type { Fault } from '../../../src/simulator/faults.ts'
import { errorTable, type ErrorCode } from '../../../src/errors/table.ts'
import {
  countBy, errorAnswerProblems, mib, ms, outcomeOf, percentile, seededRandom, shuffle,
  oneUpstreamCallPerRequest, startBlackhole, tcpHandles, waitUntil, type Answer
} from './support.ts'

const UPSTREAM_TIMEOUT_MS = 500
/** The fault mix's timeout: long enough for hundreds of calls to hang at once without the harness's own CPU time deciding outcomes. */
const MIX_TIMEOUT_MS = 2000
const MAX_RESPONSE_BYTES = 64 * 1024
const FIFTY_MB = 50_000_000
/** A hang detector, not a latency bound: everything in this file shares one event loop on a shared 2-core machine. */
const ANSWERED_WITHIN_MS = 10_000
const generous = { max: 1_000_000, timeWindow: 60_000 }
/**
 * Every gateway here: circuit breaker off, one attempt per upstream call, so
 * that each request meets its own fault (the breaker and retries are tested
 * on their own; here they would answer for the upstream).
 */
const isolated = oneUpstreamCallPerRequest()

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** The test's own HTTP client: enough connections for every request in flight at once. */
const agent = new Agent({ connections: 1024, pipelining: 1, keepAliveTimeout: 2000, headersTimeout: ANSWERED_WITHIN_MS, bodyTimeout: ANSWERED_WITHIN_MS })
const inFlight = { now: 0, max: 0 }
/** Over the whole file: faults injected, and answers that were exactly their fault's row of the error table. */
const tally = { injected: 0, survived: 0, maxInFlight: 0 }

async function call (url: string, options: { method?: 'GET' | 'POST', authorization?: string, body?: unknown } = {}): Promise<Answer> {
  const started = performance.now()
  inFlight.now += 1
  inFlight.max = Math.max(inFlight.max, inFlight.now)
  tally.maxInFlight = Math.max(tally.maxInFlight, inFlight.now)
  try {
    const response = await request(url, {
      dispatcher: agent,
      method: options.method ?? 'GET',
      headers: {
        ...(options.authorization === undefined ? {} : { authorization: options.authorization }),
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' })
      },
      body: options.body === undefined ? undefined : JSON.stringify(options.body)
    })
    const body = await response.body.text()
    return { statusCode: response.statusCode, headers: response.headers, body, ms: performance.now() - started }
  } finally {
    inFlight.now -= 1
  }
}

const createCall = (gateway: string, who: TestTenant): Promise<Answer> =>
  call(`${gateway}/v1/videos/generations`, { method: 'POST', authorization: who.authorization, body: validBody })

function tenant (name: string): TestTenant {
  return makeTenant(name, { rateLimit: generous, readRateLimit: generous })
}

async function createTask (gateway: string, who: TestTenant): Promise<string> {
  const answer = await createCall(gateway, who)
  if (answer.statusCode !== 200) throw new Error(`setup create failed: ${answer.statusCode} ${answer.body}`)
  return (JSON.parse(answer.body) as { id: string }).id
}

/** Problems with each error answer against the row its code names (format, status, type, message); at most `limit`. */
function answerProblems (answers: readonly Answer[], limit = 20): string[] {
  const problems: string[] = []
  for (const answer of answers) {
    const outcome = outcomeOf(answer)
    if (outcome === 'ok') continue
    const found = outcome in errorTable ? errorAnswerProblems(answer, outcome as ErrorCode) : [`status ${answer.statusCode}: ${answer.body.slice(0, 200)}`]
    if (found.length > 0 && problems.length < limit) problems.push(`${outcome}: ${found.join('; ')}`)
  }
  return problems
}

/** Answers whose outcome is `expected` and whose format is right: faults survived. */
function survivedAs (answers: readonly Answer[], expected: ErrorCode): number {
  return answers.filter((a) => outcomeOf(a) === expected && errorAnswerProblems(a, expected).length === 0).length
}

const latencySummary = (answers: readonly Answer[]): string => {
  const values = answers.map((a) => a.ms)
  return `p50 ${ms(percentile(values, 50))}, p99 ${ms(percentile(values, 99))}, max ${ms(Math.max(...values))}`
}

const rss = { before: 0, warm: 0, peak: 0, after: 0 }
const heap = { before: 0, after: 0 }
let sampler: NodeJS.Timeout | undefined
let handlesBefore = tcpHandles()

t.before(() => {
  gc()
  handlesBefore = tcpHandles()
  rss.before = process.memoryUsage().rss
  heap.before = process.memoryUsage().heapUsed
  rss.peak = rss.before
  sampler = setInterval(() => { rss.peak = Math.max(rss.peak, process.memoryUsage().rss) }, 50).unref()
})

type Expected = 'ok' | ErrorCode
interface Planned { fault: Fault | null, expected: Expected }

const planned = (fault: Fault | null, expected: Expected, count: number): Planned[] =>
  Array.from({ length: count }, () => ({ fault, expected }))

t.test('a shuffled mix of faults on hundreds of concurrent requests: each answer is its fault\'s row of the error table', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 600_000 })
  const load = tenant('load')
  const logs = logCollector()
  // A pool wider than the requests in flight: every upstream call gets a
  // connection at once, so each fault meets exactly the timeout it is meant to
  // meet (the saturated default pool is measured further down).
  const { url: gateway } = await startTestGateway(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [load],
    config: { ...isolated, upstreamTimeoutMs: MIX_TIMEOUT_MS, upstreamMaxResponseBytes: MAX_RESPONSE_BYTES, upstreamConnections: 512 },
    logger: { level: 'info', stream: logs.stream }
  })
  // Every read is of a task of its own, so that each one is an upstream call
  // (reads of one task are coalesced and cached: test/routes/v1/task-polling.test.ts).
  const newTaskIds = async (count: number): Promise<string[]> => await Promise.all(Array.from({ length: count }, async () => await createTask(gateway, load)))

  const creates: Planned[] = [
    ...planned({ route: 'create', delayMs: 150 }, 'ok', 40), // latency spike below the timeout
    ...planned({ route: 'create', delayMs: MIX_TIMEOUT_MS + 1000 }, 'upstream_timeout', 50), // and above it
    ...planned({ route: 'create', hang: true }, 'upstream_timeout', 40),
    ...planned({ route: 'create', bodyNeverEnds: true }, 'upstream_timeout', 40),
    ...planned({ route: 'create', reset: 'before-headers' }, 'upstream_unavailable', 30),
    ...planned({ route: 'create', reset: 'after-headers' }, 'upstream_unavailable', 30),
    ...planned({ route: 'create', status: 500 }, 'upstream_error', 20), // a 5xx burst
    ...planned({ route: 'create', status: 502 }, 'upstream_error', 10),
    ...planned({ route: 'create', status: 503 }, 'upstream_error', 10),
    ...planned({ route: 'create', status: 429, headers: { 'retry-after': '3' } }, 'upstream_rate_limited', 10),
    // 50 MB bodies: the gateway refuses them from Content-Length. The in-process
    // simulator still pushes ~4 MB into each socket before it dies (the test
    // process's RSS, not the gateway's), hence only a few.
    ...planned({ route: 'create', bodyBytes: FIFTY_MB }, 'bad_upstream_response', 6),
    ...planned({ route: 'create', garbage: '{"id": "task-unified-1-abc", "status": ' }, 'bad_upstream_response', 20), // invalid JSON
    ...planned({ route: 'create', garbage: '{"id":"task-unified-1-abc","status":"pending"}', contentType: 'text/html' }, 'bad_upstream_response', 20), // wrong content type
    ...planned(null, 'ok', 34)
  ]
  const reads: Planned[] = [
    ...planned({ route: 'task', status: 404 }, 'not_found', 15),
    ...planned({ route: 'task', status: 503 }, 'upstream_error', 15),
    ...planned({ route: 'task', reset: 'before-headers' }, 'upstream_unavailable', 15),
    ...planned({ route: 'task', hang: true }, 'upstream_timeout', 20),
    ...planned({ route: 'task', bodyBytes: FIFTY_MB }, 'bad_upstream_response', 2),
    ...planned(null, 'ok', 33)
  ]
  const random = seededRandom(20240611)
  // Creates and reads interleaved, sent in batches of 40 every 50 ms: the
  // long-lived ones (hangs, slow bodies: 2 s) pile up to hundreds in flight,
  // while the CPU work of starting them is spread (one process does client,
  // gateway and simulator work: an instant burst of 460 would starve its event
  // loop for over a second, and the gateway's deadlines would then measure
  // the harness, not the faults).
  const order = shuffle([...creates.map(() => 'create' as const), ...reads.map(() => 'read' as const)], random)
  const fire = async (taskIds: string[]): Promise<Array<{ kind: 'create' | 'read', answer: Answer }>> => {
    const pending: Array<Promise<{ kind: 'create' | 'read', answer: Answer }>> = []
    let readsSent = 0
    for (let i = 0; i < order.length; i++) {
      if (i > 0 && i % 40 === 0) await sleep(50)
      const kind = order[i] as 'create' | 'read'
      const sent = kind === 'create' ? createCall(gateway, load) : call(`${gateway}/v1/tasks/${taskIds[readsSent++] as string}`, { authorization: load.authorization })
      pending.push(sent.then((answer) => ({ kind, answer })))
    }
    return Promise.all(pending)
  }

  // Warm-up: the same traffic without faults. V8 sizes its heap for this many
  // requests in one process and keeps it; the RSS baseline is taken after
  // that, so that the growth measured at the end is what the faults added.
  const warmUp = (await fire(await newTaskIds(reads.length))).map((r) => r.answer)
  t.same(answerProblems(warmUp), [], `warm-up: ${warmUp.length} requests without faults, every answer well formed`)
  t.comment(`warm-up without faults: ${warmUp.length} requests, ${JSON.stringify(countBy(warmUp, outcomeOf))}, ${latencySummary(warmUp)}`)
  gc()
  rss.warm = process.memoryUsage().rss
  rss.peak = rss.warm

  // One fault per upstream call, shuffled (seeded), FIFO per route: faults meet
  // calls in the order calls arrive, so the check is on the multiset of
  // answers, plus each answer against its own row.
  const faultRunTaskIds = await newTaskIds(reads.length)
  const faults = [...shuffle(creates.filter((p) => p.fault !== null), random), ...shuffle(reads.filter((p) => p.fault !== null), random)]
  for (const plan of faults) upstream.simulator.faults.push(plan.fault as Fault)
  tally.injected += faults.length

  inFlight.max = 0
  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  loopDelay.enable()
  const started = performance.now()
  const results = await fire(faultRunTaskIds)
  const wallMs = performance.now() - started
  loopDelay.disable()
  const answers = results.map((r) => r.answer)
  const createAnswers = results.filter((r) => r.kind === 'create').map((r) => r.answer)
  const readAnswers = results.filter((r) => r.kind === 'read').map((r) => r.answer)

  t.equal(upstream.simulator.faults.size, 0, 'every injected fault was consumed by exactly one upstream call')
  // Exactly the rows the faults map to, as multisets. One exception is legitimate:
  // if this process was starved of CPU (the machine is shared), the gateway's
  // deadline can pass first and a request answers upstream_timeout instead.
  // That is checked loosely always (no other row in excess) and exactly when the
  // event loop kept up (delay under a quarter of the timeout).
  const loopDelayMaxMs = loopDelay.max / 1e6
  const starved = loopDelayMaxMs > MIX_TIMEOUT_MS / 4
  const misrouted: string[] = []
  let misroutedCount = 0
  let extraTimeouts = 0
  for (const [name, planned, got] of [['creates', creates, createAnswers], ['task reads', reads, readAnswers]] as const) {
    const wanted = countBy(planned, (p) => p.expected)
    const actual = countBy(got, outcomeOf)
    for (const [row, count] of Object.entries(actual)) {
      const excess = count - (wanted[row] ?? 0)
      if (excess > 0 && row === 'upstream_timeout') extraTimeouts += excess
      else if (excess > 0) {
        misroutedCount += excess
        misrouted.push(`${name}: ${excess} more ${row} than faults mapping to it`)
      }
    }
    t.same(actual, wanted, `${name}: the answers are exactly the rows their faults map to`, starved ? { skip: `this process was starved (event-loop delay ${ms(loopDelayMaxMs)})` } : {})
  }
  t.same(misrouted, [], 'no answer has a row that no fault maps to (upstream_timeout aside)')
  t.same(answerProblems(answers), [], 'every error answer has its row\'s status, type and message, in the one format')
  t.ok(createAnswers.filter((a) => outcomeOf(a) === 'upstream_rate_limited').every((a) => a.headers['retry-after'] === '3'), 'upstream 429s pass Retry-After on')
  const timedOut = answers.filter((a) => outcomeOf(a) === 'upstream_timeout')
  t.ok(Math.min(...timedOut.map((a) => a.ms)) >= MIX_TIMEOUT_MS, 'no upstream_timeout before the timeout')
  t.ok(Math.max(...answers.map((a) => a.ms)) < ANSWERED_WITHIN_MS, 'every request was answered (none hung)')
  t.notOk(logs.lines.some((line) => line.code === 'internal_error'), 'no internal_error in the log')

  // A fault survived when the gateway answered it, well formed, with its row (or after its deadline, upstream_timeout).
  const broken = answerProblems(answers, Infinity).length
  const survived = Math.max(0, faults.length - broken - misroutedCount)
  tally.survived += survived
  t.equal(survived, faults.length, 'every fault survived')
  t.comment(`fault mix: ${answers.length} requests, ${inFlight.max} in flight at once, ${faults.length} faults injected, ${survived} survived` +
    `${extraTimeouts > 0 ? ` (${extraTimeouts} as upstream_timeout: the deadline passed while this process was starved)` : ''}; wall ${ms(wallMs)}; ` +
    `event-loop delay p99 ${ms(loopDelay.percentile(99) / 1e6)}, max ${ms(loopDelayMaxMs)}`)
  for (const [outcome] of Object.entries(countBy(answers, outcomeOf))) {
    const of = answers.filter((a) => outcomeOf(a) === outcome)
    t.comment(`  ${outcome}: ${of.length}, ${latencySummary(of)}`)
  }

  // Alone, so that the time is the gateway's and not the crowd's: a 50 MB body
  // is refused from its Content-Length, without reading it.
  upstream.simulator.faults.push({ route: 'create', bodyBytes: FIFTY_MB })
  tally.injected += 1
  const big = await createCall(gateway, load)
  t.same(errorAnswerProblems(big, 'bad_upstream_response'), [], 'a 50 MB upstream body alone: bad_upstream_response')
  t.ok(big.ms < UPSTREAM_TIMEOUT_MS, `answered in ${ms(big.ms)}, without waiting for the body`)
  if (outcomeOf(big) === 'bad_upstream_response') tally.survived += 1

  t.equal((await call(`${gateway}/healthz`)).statusCode, 200, 'the gateway is healthy afterwards')
  t.equal((await createCall(gateway, load)).statusCode, 200, 'and creates work again once the faults are gone')
})

interface HangResult { reads: Answer[], health: Answer[], hung: Answer[] }

/**
 * `hanging` creates from one tenant hang upstream; once they have all reached
 * the upstream, four other tenants read their own tasks and a probe calls
 * /healthz, sequentially with 10 ms pauses, for `probeMs`.
 */
async function whileCreatesHang (t: Test, options: { hanging: number, upstreamConnections: number, upstreamTimeoutMs: number, probeMs: number }): Promise<HangResult> {
  const upstream = await startTestSimulator(t, { taskDurationMs: 600_000 })
  const noisy = tenant('noisy')
  const others = [tenant('quiet-a'), tenant('quiet-b'), tenant('quiet-c'), tenant('quiet-d')]
  const { url: gateway } = await startTestGateway(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [noisy, ...others],
    // The shortest status TTL: the quiet tenants' reads must keep reaching the upstream, past the hanging creates.
    config: { ...isolated, upstreamTimeoutMs: options.upstreamTimeoutMs, upstreamMaxResponseBytes: MAX_RESPONSE_BYTES, upstreamConnections: options.upstreamConnections, taskStatusTtlMs: 50 }
  })
  const readers = await Promise.all(others.map(async (who) => ({ who, taskId: await createTask(gateway, who) })))
  const createsBefore = upstream.simulator.calls.create

  upstream.simulator.faults.push({ route: 'create', hang: true, times: options.hanging })
  tally.injected += options.hanging
  inFlight.max = 0
  const creates = Promise.all(Array.from({ length: options.hanging }, () => createCall(gateway, noisy)))
  // Until every hanging create is at the upstream (or the pool is full: no more can get there).
  const atUpstream = Math.min(options.hanging, options.upstreamConnections)
  await waitUntil(() => upstream.simulator.calls.create - createsBefore >= atUpstream, 5000, 10)

  const until = performance.now() + options.probeMs
  const reads: Answer[] = []
  const health: Answer[] = []
  const maxPerLoop = 200
  await Promise.all([
    ...readers.map(async ({ who, taskId }) => {
      for (let i = 0; i < maxPerLoop && performance.now() < until; i++) {
        reads.push(await call(`${gateway}/v1/tasks/${taskId}`, { authorization: who.authorization }))
        await sleep(10)
      }
    }),
    (async () => {
      for (let i = 0; i < maxPerLoop && performance.now() < until; i++) {
        health.push(await call(`${gateway}/healthz`))
        await sleep(10)
      }
    })()
  ])
  const hung = await creates
  t.same(countBy(hung, outcomeOf), { upstream_timeout: options.hanging }, `all ${options.hanging} hanging creates: upstream_timeout`)
  t.same(answerProblems(hung), [], 'in the one format')
  tally.survived += survivedAs(hung, 'upstream_timeout')
  t.comment(`${options.hanging} hanging creates (${atUpstream} at the upstream at once), upstream pool ${options.upstreamConnections}, timeout ${options.upstreamTimeoutMs} ms, ${inFlight.max} requests in flight; ` +
    `other tenants' reads: ${reads.length}, ${latencySummary(reads)}, ${JSON.stringify(countBy(reads, outcomeOf))}; ` +
    `/healthz: ${health.length}, ${latencySummary(health)}; hanging creates ${latencySummary(hung)}`)
  return { reads, health, hung }
}

t.test('while one tenant\'s creates hang, other tenants\' reads and /healthz keep answering', async (t) => {
  // 300 hanging creates on a pool wide enough for all of them: the gateway itself must not block.
  // A 2 s timeout, so that all 300 hang at once for a while (admitting them takes this one process ~1 s).
  const { reads, health } = await whileCreatesHang(t, { hanging: 300, upstreamConnections: 512, upstreamTimeoutMs: 2000, probeMs: 700 })
  t.ok(reads.length >= 20, `the other tenants kept reading (${reads.length} reads)`)
  t.same(countBy(reads, outcomeOf), { ok: reads.length }, 'every read answered 200')
  t.ok(percentile(reads.map((a) => a.ms), 99) < UPSTREAM_TIMEOUT_MS, 'their p99 stays below 500 ms (the upstream timeout of the other tests): no head-of-line blocking')
  t.ok(percentile(health.map((a) => a.ms), 99) < UPSTREAM_TIMEOUT_MS, '/healthz p99 below 500 ms')
})

t.test('hanging creates beyond the default upstream pool (128) hold up other tenants\' reads', async (t) => {
  // The same with the default UPSTREAM_CONNECTIONS: 200 hanging creates, 128 connections, 1 s timeout.
  const timeoutMs = 1000
  const { reads, health, hung } = await whileCreatesHang(t, { hanging: 200, upstreamConnections: 128, upstreamTimeoutMs: timeoutMs, probeMs: 700 })
  t.ok(percentile(health.map((a) => a.ms), 99) < UPSTREAM_TIMEOUT_MS, '/healthz p99 below 500 ms: the event loop is free')
  t.ok(percentile(reads.map((a) => a.ms), 99) < UPSTREAM_TIMEOUT_MS, 'other tenants\' read p99 below 500 ms')
  t.same(countBy(reads, outcomeOf), { ok: reads.length }, 'every read of another tenant answered 200')
  t.ok(Math.max(...hung.map((a) => a.ms)) < timeoutMs + 1000, 'each hanging create answered within UPSTREAM_TIMEOUT_MS (+1 s)')
})

t.test('an upstream whose TCP connect never completes: answered at the connect timeout or the deadline, whichever comes first', async (t) => {
  const blackhole = await startBlackhole()
  t.teardown(blackhole.close)
  t.ok(blackhole.pendingConnectVerified, 'a connect to it really stays pending (accept queue full, SYNs dropped)')
  const load = tenant('blackholed')
  const { url: gateway } = await startTestGateway(t, {
    upstreamUrl: blackhole.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [load],
    config: { ...isolated, upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS, upstreamMaxResponseBytes: MAX_RESPONSE_BYTES }
  })
  const count = 200
  tally.injected += count
  inFlight.max = 0
  const until = performance.now() + 3 * UPSTREAM_TIMEOUT_MS
  const healthDuring = (async () => {
    const list: Answer[] = []
    for (let i = 0; i < 100 && performance.now() < until; i++) {
      list.push(await call(`${gateway}/healthz`))
      await sleep(20)
    }
    return list
  })()
  const answers = await Promise.all(Array.from({ length: count }, () => createCall(gateway, load)))
  const health = await healthDuring
  // The first wave's connects time out (502 upstream_unavailable); calls queued behind
  // them reach the gateway's own deadline first (504 upstream_timeout). Both within the budget.
  const outcomes = countBy(answers, outcomeOf)
  t.same(Object.keys(outcomes).filter((code) => code !== 'upstream_unavailable' && code !== 'upstream_timeout'), [], `every create: 502 upstream_unavailable or 504 upstream_timeout (${JSON.stringify(outcomes)})`)
  t.same(answerProblems(answers), [], 'in the one format')
  tally.survived += survivedAs(answers, 'upstream_unavailable') + survivedAs(answers, 'upstream_timeout')
  t.comment(`hanging connect: ${count} creates on the default pool (128), ${inFlight.max} in flight; creates ${latencySummary(answers)}; /healthz meanwhile ${latencySummary(health)}`)
  t.ok(Math.min(...answers.map((a) => a.ms)) >= UPSTREAM_TIMEOUT_MS - 50, 'none failed before the connect timeout (pending, not refused)')
  t.ok(percentile(health.map((a) => a.ms), 99) < UPSTREAM_TIMEOUT_MS, '/healthz p99 below 500 ms meanwhile')
  t.ok(Math.max(...answers.map((a) => a.ms)) < UPSTREAM_TIMEOUT_MS + 1000, 'each create answered within UPSTREAM_TIMEOUT_MS (+1 s)')
})

t.test('a 50 MB chunked body without Content-Length: the gateway stops reading at the cap', async (t) => {
  // The simulator always declares Content-Length; this upstream does not, so
  // the cap must be enforced while reading. It counts what it managed to write.
  let written = 0
  const chunk = Buffer.alloc(64 * 1024, 'x')
  const server: Server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' })
    response.write('{"pad":"')
    let left = FIFTY_MB
    const pump = (): void => {
      while (left > 0 && !response.destroyed) {
        left -= chunk.length
        written += chunk.length
        if (!response.write(chunk)) {
          response.once('drain', pump)
          return
        }
      }
      if (!response.destroyed) response.end('"}')
    }
    pump()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  const load = tenant('chunked')
  const { url: gateway } = await startTestGateway(t, {
    upstreamUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [load],
    config: { ...isolated, upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS, upstreamMaxResponseBytes: MAX_RESPONSE_BYTES }
  })
  const count = 20
  tally.injected += count
  const answers = await Promise.all(Array.from({ length: count }, () => createCall(gateway, load)))
  t.same(countBy(answers, outcomeOf), { bad_upstream_response: count }, 'every create: 502 bad_upstream_response')
  t.same(answerProblems(answers), [], 'in the one format')
  tally.survived += survivedAs(answers, 'bad_upstream_response')
  await sleep(100)
  const perCall = written / count
  t.comment(`chunked 50 MB: ${count} calls at once, ${latencySummary(answers)}; the upstream got ${mib(perCall)} per call into its socket before the gateway cut it (cap ${mib(MAX_RESPONSE_BYTES)}; the rest is kernel socket buffers)`)
  t.ok(Math.max(...answers.map((a) => a.ms)) < UPSTREAM_TIMEOUT_MS, 'answered before the timeout, not after 50 MB')
  t.ok(perCall < 16 * 1024 * 1024, 'the upstream could push nowhere near 50 MB per call')
})

t.test('memory stays bounded, no socket leaks, and the tally', async (t) => {
  await agent.close()
  clearInterval(sampler)
  gc()
  rss.after = process.memoryUsage().rss
  heap.after = process.memoryUsage().heapUsed
  const settled = await waitUntil(() => tcpHandles().total <= handlesBefore.total, 3000)
  const handlesAfter = tcpHandles()
  t.comment(`faults injected ${tally.injected}, survived ${tally.survived}; max ${tally.maxInFlight} requests in flight`)
  t.comment(`RSS cold ${mib(rss.before)}, after the warm-up burst ${mib(rss.warm)}, peak ${mib(rss.peak)}, after (GC) ${mib(rss.after)}; heap used before ${mib(heap.before)}, after (GC) ${mib(heap.after)}; TCP handles before ${JSON.stringify(handlesBefore)}, after ${JSON.stringify(handlesAfter)}`)
  t.equal(tally.survived, tally.injected, 'every injected fault survived (answered with its row)')
  t.ok(rss.after - rss.warm < 200 * 1024 * 1024, `RSS growth over the faults ${mib(rss.after - rss.warm)} < 200 MiB, 50 MB bodies included`)
  t.ok(rss.peak - rss.warm < 250 * 1024 * 1024, `RSS peak over the faults ${mib(rss.peak - rss.warm)} < 250 MiB`)
  t.ok(heap.after - heap.before < 64 * 1024 * 1024, `heap in use after GC grew ${mib(heap.after - heap.before)} < 64 MiB: nothing piles up`)
  t.ok(settled, 'TCP handles back to the baseline once the apps are closed')
  t.same(handlesAfter, handlesBefore, 'TCP sockets and servers: as before')
})
