import t from 'tap'
import { Counter, Histogram, Registry } from 'prom-client'
import { TalliedCounter, TalliedHistogram } from '../../../src/features/observability/tallies.ts'

// The tallied metrics must serve exactly what prom-client's own would, fed the same values.
function pair (): { own: Registry, tallied: Registry, feed: (route: string, status: string, seconds: number, credits: number) => void } {
  const own = new Registry()
  const tallied = new Registry()
  const counterConfig = { name: 'x_requests_total', help: 'Requests.', labelNames: ['route', 'status'] as const }
  // Unsorted on purpose: prom-client keeps the order given (and counts by it), and so must the tally.
  const histogramConfig = { name: 'x_duration_seconds', help: 'Durations.', labelNames: ['method'] as const, buckets: [0.1, 0.025, 1, 0.5] }
  const ownCounter = new Counter({ ...counterConfig, registers: [own] })
  const ownHistogram = new Histogram({ ...histogramConfig, registers: [own] })
  const ownCredits = new Counter({ name: 'x_credits_total', help: 'Credits.', registers: [own] })
  const talliedCounter = new TalliedCounter({ ...counterConfig, registers: [tallied] })
  const talliedHistogram = new TalliedHistogram({ ...histogramConfig, registers: [tallied] })
  const talliedCredits = new TalliedCounter({ name: 'x_credits_total', help: 'Credits.', registers: [tallied] })
  return {
    own,
    tallied,
    feed (route, status, seconds, credits) {
      const method = status === '200' ? 'GET' : 'POST'
      ownCounter.inc({ route, status })
      if (!talliedCounter.add(`${route}\n${status}`)) talliedCounter.begin(`${route}\n${status}`, { route, status })
      ownHistogram.observe({ method }, seconds)
      if (!talliedHistogram.record(method, seconds)) talliedHistogram.begin(method, { method }, seconds)
      ownCredits.inc(credits)
      if (!talliedCredits.add('', credits)) talliedCredits.begin('', {}, credits)
    }
  }
}

t.test('the text and JSON forms are prom-client\'s own, across scrapes and a reset', async (t) => {
  const { own, tallied, feed } = pair()
  t.equal(await tallied.metrics(), await own.metrics(), 'nothing observed yet')
  // On a bound, between bounds, past the last one, below the first; two series of each.
  feed('/a', '200', 0.025, 0.5)
  feed('/a', '200', 0.3, 0.25)
  feed('/b', '404', 7, 1)
  feed('/a', '200', 0.001, 2)
  feed('/b', '500', 1, 0.125)
  const first = await own.metrics()
  t.match(first, /x_duration_seconds_bucket\{le="0.025",method="GET"\} 2\n/, 'the comparison is of real values')
  t.equal(await tallied.metrics(), first)
  t.same(await tallied.getMetricsAsJSON(), await own.getMetricsAsJSON())
  feed('/b', '404', 0.5, 3)
  feed('/c', '200', 0.05, 0.5)
  t.equal(await tallied.metrics(), await own.metrics(), 'increments after a scrape add to what was scraped')
  t.equal(await tallied.metrics(), await own.metrics(), 'a scrape with nothing new changes nothing')
  own.resetMetrics()
  tallied.resetMetrics()
  t.equal(await tallied.metrics(), await own.metrics(), 'after a reset')
  feed('/a', '200', 2, 1)
  t.equal(await tallied.metrics(), await own.metrics(), 'counting again after a reset')
})
