import t from 'tap'
import { backoffDelayMs, callWithRetries, retryReason, type RetryPolicy } from '../../../src/features/upstream/retry.ts'
import { gatewayError, type GatewayError } from '../../../src/errors/table.ts'
import { mapUpstreamFailure } from '../../../src/features/upstream/failure.ts'

const policy: RetryPolicy = { attempts: 3, baseDelayMs: 10, maxDelayMs: 40 }
const transport = (code: string): GatewayError => mapUpstreamFailure({ kind: 'transport', cause: Object.assign(new Error(code), { code }), timeoutMs: 1000 })
const status = (statusCode: number, retryAfter?: string): GatewayError => mapUpstreamFailure({ kind: 'status', statusCode, body: undefined, retryAfter, scrub: (text) => text })

t.test('backoff: capped exponential, full jitter', async (t) => {
  t.equal(backoffDelayMs(1, policy, () => 0), 0, 'jitter can be none')
  t.equal(backoffDelayMs(1, policy, () => 0.999), 9, 'below the first step (10)')
  t.equal(backoffDelayMs(2, policy, () => 0.999), 19)
  t.equal(backoffDelayMs(3, policy, () => 0.999), 39)
  t.equal(backoffDelayMs(9, policy, () => 0.999), 39, 'capped at maxDelayMs')
  for (let i = 0; i < 200; i++) {
    const delay = backoffDelayMs(4, policy)
    if (delay < 0 || delay >= 40) t.fail(`delay ${delay} out of [0, 40)`)
  }
})

t.test('what may be retried', async (t) => {
  t.equal(retryReason('POST', transport('ECONNREFUSED'), 1, policy), 'ECONNREFUSED', 'a refused connect: nothing was sent')
  t.equal(retryReason('POST', transport('ECONNREFUSED'), 2, policy), null, 'once')
  for (const code of ['ECONNRESET', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT']) {
    t.equal(retryReason('POST', transport(code), 1, policy), null, `POST is not retried after ${code}: it may have reached the upstream`)
    t.equal(retryReason('GET', transport(code), 1, policy), code, `GET is, after ${code}`)
  }
  for (const code of [502, 503, 504]) {
    t.equal(retryReason('GET', status(code), 1, policy), `status ${code}`)
    t.equal(retryReason('POST', status(code), 1, policy), null)
  }
  for (const code of [400, 401, 402, 403, 404, 429, 500, 501]) t.equal(retryReason('GET', status(code), 1, policy), null, `not ${code}`)
  t.equal(retryReason('GET', transport('UND_ERR_HEADERS_TIMEOUT'), 1, policy), null, 'not a timeout: the budget is spent')
  t.equal(retryReason('GET', gatewayError('upstream_circuit_open', { args: [5] }), 1, policy), null, 'not an open breaker')
  t.equal(retryReason('GET', new Error('bug'), 1, policy), null, 'not a bug')
  t.equal(retryReason('GET', status(503), 3, policy), null, 'not past the attempts')
})

t.test('callWithRetries', async (t) => {
  // Real timers: the bounds on wall time below are liveness bounds with room for a loaded
  // machine (an answer "at once" against a wait of a second), not speed figures.
  const run = async (method: 'GET' | 'POST', failures: GatewayError[], budgetMs = 1000, retry = policy, random?: () => number) => {
    const budgets: number[] = []
    let attempts = 0
    const started = performance.now()
    const outcome = await callWithRetries({ method, policy: retry, budgetMs, random }, async (budget) => {
      budgets.push(budget)
      const failure = failures[attempts++]
      if (failure !== undefined) throw failure
      return 'ok'
    }).catch((error: GatewayError) => error)
    return { outcome, attempts, budgets, ms: performance.now() - started }
  }

  t.test('a GET succeeds on the third attempt', async (t) => {
    const { outcome, attempts, budgets } = await run('GET', [status(503), transport('ECONNRESET')])
    t.equal(outcome, 'ok')
    t.equal(attempts, 3)
    t.equal(budgets[0], 1000, 'the first attempt gets the whole budget')
    t.ok((budgets[2] as number) < 1000 && (budgets[2] as number) > 500, 'later ones what is left')
  })

  t.test('bounded in count: the last failure comes back', async (t) => {
    const last = status(504)
    const { outcome, attempts } = await run('GET', [status(503), status(502), last, status(503)])
    t.equal(outcome, last)
    t.equal(attempts, 3)
  })

  t.test('a POST: only a refused connect, once', async (t) => {
    t.equal((await run('POST', [transport('ECONNREFUSED')])).attempts, 2)
    t.equal((await run('POST', [transport('ECONNREFUSED'), transport('ECONNREFUSED')])).attempts, 2)
    t.equal((await run('POST', [status(503)])).attempts, 1)
  })

  t.test('Retry-After is honoured when it fits', async (t) => {
    const slow = { attempts: 3, baseDelayMs: 1, maxDelayMs: 1500 }
    const { outcome, attempts, ms } = await run('GET', [status(503, '0'), status(503, '1')], 3000, slow)
    t.equal(outcome, 'ok')
    t.equal(attempts, 3)
    t.ok(ms >= 990, `waited as asked (${Math.round(ms)} ms)`)
  })

  t.test('a Retry-After over maxDelayMs, or over the budget, ends the retries at once', async (t) => {
    const tooLong = await run('GET', [status(503, '1')], 5000, { attempts: 3, baseDelayMs: 1, maxDelayMs: 500 })
    t.equal(tooLong.attempts, 1)
    t.ok(tooLong.ms < 500, 'at once, not after the second asked for')
    const overBudget = await run('GET', [status(503, '1')], 800, { attempts: 3, baseDelayMs: 1, maxDelayMs: 2000 })
    t.equal(overBudget.attempts, 1)
    t.ok(overBudget.ms < 500, 'at once')
  })

  t.test('everything stays within the budget', async (t) => {
    // Waits of 500 ms against a budget of 1000: after one wait, less is left than another wait
    // and an attempt (100 ms) need, so the retries end there, however fast the attempts fail.
    const { attempts, budgets, ms } = await run('GET', [status(503), status(503), status(503)], 1000, { attempts: 10, baseDelayMs: 501, maxDelayMs: 501 }, () => 0.999)
    t.equal(attempts, 2, 'one wait fits, a second does not')
    t.ok((budgets[1] as number) <= 1000 - 500, `the second attempt gets what is left (${budgets[1]} ms)`)
    t.ok(ms < 1000, `${Math.round(ms)} ms in all, within the budget`)
  })
})
