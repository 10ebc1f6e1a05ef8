import t from 'tap'
import { createHash } from 'node:crypto'
import { request } from 'undici'
import { startTestGateway, makeTenant, validBody } from '../../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../../helpers/simulator.ts'
import { redisForTests } from '../../../helpers/redis.ts'

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false

t.test('two gateway instances on one Redis: one upstream call per Idempotency-Key', { skip }, async (t) => {
  if ('skip' in redis) return
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme', { rateLimit: { max: 1000, timeWindow: 60_000 } })
  const options = { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { redisUrl: redis.url } }
  const first = await startTestGateway(t, options)
  const second = await startTestGateway(t, options)
  const send = async (url: string, key: string, body: unknown = validBody) => {
    const response = await request(`${url}/v1/videos/generations`, {
      method: 'POST',
      headers: { authorization: acme.authorization, 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(body)
    })
    return { status: response.statusCode, replayed: response.headers['idempotent-replayed'] === 'true', body: await response.body.text() }
  }

  t.test('the same key sent to both at once, 20 rounds', async (t) => {
    // A slow upstream keeps the first request in flight while the second arrives.
    upstream.simulator.faults.push({ route: 'create', delayMs: 60, times: Infinity })
    t.teardown(() => upstream.simulator.faults.clear())
    const rounds = 20
    let conflicts = 0
    let replays = 0
    const before = upstream.simulator.calls.create
    for (let round = 0; round < rounds; round++) {
      const key = `round-${process.pid}-${Date.now()}-${round}`
      const before = upstream.simulator.calls.create
      const answers = await Promise.all([send(first.url, key), send(second.url, key)])
      t.equal(upstream.simulator.calls.create - before, 1, `round ${round}: exactly one upstream call`)
      const originals = answers.filter((answer) => answer.status === 200 && !answer.replayed)
      t.equal(originals.length, 1, `round ${round}: one original answer`)
      const other = answers.find((answer) => answer !== originals[0])
      t.ok(other?.status === 409 || (other?.status === 200 && other.replayed), `round ${round}: the other is 409 or a replay (${other?.status})`)
      if (other?.status === 409) conflicts += 1
      else replays += 1
      // Afterwards, either instance replays the one answer.
      const again = await send(round % 2 === 0 ? first.url : second.url, key)
      t.same({ status: again.status, replayed: again.replayed, body: again.body }, { status: 200, replayed: true, body: originals[0]?.body })
    }
    t.equal(upstream.simulator.calls.create - before, rounds, `${rounds} rounds, ${rounds * 3} requests, ${rounds} upstream calls`)
    t.comment(`${rounds} rounds: ${rounds} upstream calls; the concurrent twin got 409 ${conflicts} times and a replay ${replays} times`)
  })

  t.test('the record lives in Redis under vg:idem:, for IDEMPOTENCY_TTL_MS', async (t) => {
    const key = `ttl-${process.pid}-${Date.now()}`
    t.equal((await send(first.url, key)).status, 200)
    const redisKey = `vg:idem:${acme.id}:${createHash('sha256').update(key).digest('hex')}`
    const ttl = await first.app.redis?.pttl(redisKey) ?? -1
    t.ok(ttl > 86_400_000 - 60_000 && ttl <= 86_400_000, `24 h (${ttl} ms)`)
  })

  t.test('a transient failure on one instance frees the key for a retry on the other', async (t) => {
    const key = `retry-${process.pid}-${Date.now()}`
    upstream.simulator.faults.push({ route: 'create', status: 503 })
    const before = upstream.simulator.calls.create
    t.equal((await send(first.url, key)).status, 502)
    const retried = await send(second.url, key)
    t.same({ status: retried.status, replayed: retried.replayed }, { status: 200, replayed: false })
    t.equal(upstream.simulator.calls.create - before, 2)
  })

  t.test('another body under the same key is 422 on the other instance too', async (t) => {
    const key = `reuse-${process.pid}-${Date.now()}`
    t.equal((await send(first.url, key)).status, 200)
    t.equal((await send(second.url, key, { ...validBody, prompt: 'Another prompt' })).status, 422)
  })
})
