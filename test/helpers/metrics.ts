import { setTimeout as sleep } from 'node:timers/promises'

/** METRICS_TOKEN of test gateways that are scraped over HTTP (16+ characters). */
export const testMetricsToken = 'test-metrics-token-0123456789'

/** One series of a gateway's GET /metrics (with `testMetricsToken`), as a scraper reads it; undefined when absent. */
export async function scrape (url: string, nameAndLabels: string): Promise<number | undefined> {
  const answer = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${testMetricsToken}` } })
  if (answer.status !== 200) throw new Error(`GET /metrics answered ${answer.status}`)
  const text = await answer.text()
  const line = text.split('\n').find((candidate) => candidate.startsWith(nameAndLabels + ' '))
  return line === undefined ? undefined : Number(line.slice(nameAndLabels.length + 1))
}

/** Scrapes until the series has this value (or `timeoutMs` passed); answers the last value read. */
export async function scrapeUntil (url: string, nameAndLabels: string, expected: number, timeoutMs = 5000): Promise<number | undefined> {
  const until = performance.now() + timeoutMs
  for (;;) {
    const value = await scrape(url, nameAndLabels)
    if (value === expected || performance.now() > until) return value
    await sleep(10)
  }
}
