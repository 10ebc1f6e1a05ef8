import t from 'tap'
import { createCircuitBreaker, type BreakerState } from '../../../src/features/upstream/circuit-breaker.ts'

class Failure extends Error {}
class Answer extends Error {}

function setup (failureThreshold = 3) {
  let now = 0
  const transitions: Array<[BreakerState, BreakerState]> = []
  const rejections: number[] = []
  const breaker = createCircuitBreaker({
    failureThreshold,
    openMs: 1000,
    now: () => now,
    isFailure: (error) => error instanceof Failure,
    rejection: (retryAfterMs) => {
      rejections.push(retryAfterMs)
      return new Error('open')
    },
    onTransition: ({ from, to }) => { transitions.push([from, to]) }
  })
  let calls = 0
  const ok = () => breaker.run(async () => { calls++; return 'ok' })
  const fail = () => breaker.run(async () => { calls++; throw new Failure() }).catch((error: Error) => error)
  const answer4xx = () => breaker.run(async () => { calls++; throw new Answer() }).catch((error: Error) => error)
  return { breaker, transitions, rejections, ok, fail, answer4xx, calls: () => calls, tick: (ms: number) => { now += ms } }
}

t.test('opens after N consecutive failures, rejects without calling, probes once, closes', async (t) => {
  const { breaker, transitions, rejections, ok, fail, calls, tick } = setup()
  await fail()
  await fail()
  t.equal(breaker.state, 'closed')
  await fail()
  t.equal(breaker.state, 'open')
  t.equal(calls(), 3)
  tick(400)
  t.equal((await fail()).message, 'open', 'rejected')
  t.equal(calls(), 3, 'without a call')
  t.same(rejections, [600], 'told how long until the probe')
  tick(600)
  t.equal(breaker.state, 'half-open')
  t.equal(await ok(), 'ok', 'the probe goes through')
  t.equal(breaker.state, 'closed')
  t.same(transitions, [['closed', 'open'], ['open', 'half-open'], ['half-open', 'closed']], 'each transition reported once')
})

t.test('only one probe at a time; a failed probe opens it again', async (t) => {
  const { breaker, transitions, fail, calls, tick } = setup(1)
  await fail()
  tick(1000)
  let release: (value: unknown) => void = () => {}
  const probe = breaker.run(() => new Promise((resolve) => { release = resolve }).then(() => { throw new Failure() }))
  t.equal(breaker.state, 'half-open')
  t.equal((await fail()).message, 'open', 'a second caller is rejected while the probe runs')
  t.equal(calls(), 1)
  release(undefined)
  t.ok(await probe.catch((error: unknown) => error) instanceof Failure, 'the failure of the probe comes back')
  t.equal(breaker.state, 'open', 'the failed probe re-opened it')
  t.same(transitions.at(-1), ['half-open', 'open'])
  tick(999)
  t.equal(breaker.state, 'open', 'for a whole new pause')
})

t.test('answers that are not failures (4xx) are not counted and break the streak', async (t) => {
  const { breaker, fail, answer4xx } = setup()
  for (let i = 0; i < 10; i++) await answer4xx()
  t.equal(breaker.state, 'closed')
  await fail()
  await fail()
  await answer4xx()
  await fail()
  await fail()
  t.equal(breaker.state, 'closed', 'never 3 in a row')
  await fail()
  t.equal(breaker.state, 'open')
})

t.test('a 4xx answer to the probe closes it too (the upstream answers)', async (t) => {
  const { breaker, fail, answer4xx, tick } = setup(1)
  await fail()
  tick(1000)
  await answer4xx()
  t.equal(breaker.state, 'closed')
})

t.test('calls that started before it opened change nothing when they end', async (t) => {
  const { breaker, fail, tick, ok } = setup(2)
  let release: (value: unknown) => void = () => {}
  const slow = breaker.run(() => new Promise((resolve) => { release = resolve }))
  await fail()
  await fail()
  t.equal(breaker.state, 'open')
  release('late')
  t.equal(await slow, 'late')
  t.equal(breaker.state, 'open', 'a late success does not close it')
  tick(1000)
  await ok()
  t.equal(breaker.state, 'closed')
})

t.test('0 disables it', async (t) => {
  const { breaker, fail, calls } = setup(0)
  for (let i = 0; i < 20; i++) await fail()
  t.equal(breaker.state, 'closed')
  t.equal(calls(), 20)
})
