import { Counter, Histogram, type CounterConfiguration, type HistogramConfiguration, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client'

/**
 * Metrics of the request path, counted in plain maps and handed to prom-client
 * at scrape time. prom-client's inc() and observe() validate and hash their
 * labels object on every call, and a histogram's observe() reads and writes
 * its buckets under number-as-string keys: together a few µs per create under
 * load (docs/benchmark.md). Here a series is found by a key the caller builds
 * (labels joined by a character none of them can contain) and its labels
 * object is made once, when the series first appears. The text /metrics
 * serves is prom-client's, unchanged (test/features/observability/tallies.test.ts
 * compares it with prom-client's own metrics fed the same values).
 */

/** A counter whose increments wait in a map until the next scrape. */
export class TalliedCounter<L extends string> {
  readonly #pending = new Map<string, { labels: Record<L, string>, value: number }>()

  constructor (configuration: CounterConfiguration<L>) {
    const pending = this.#pending
    new Counter<L>({ // eslint-disable-line no-new
      ...configuration,
      collect () {
        for (const entry of pending.values()) {
          if (entry.value === 0) continue
          this.inc(entry.labels, entry.value)
          entry.value = 0
        }
      }
    })
  }

  /**
   * Adds to the series `key` names (its label values, joined): false when there is none
   * yet, and then `begin` makes it. Two calls rather than a labels callback, so that
   * the request path allocates no closure per call.
   */
  add (key: string, value = 1): boolean {
    const entry = this.#pending.get(key)
    if (entry === undefined) return false
    entry.value += value
    return true
  }

  /** A new series: its labels (made once, here) and its first value. */
  begin (key: string, labels: Record<L, string>, value = 1): void {
    this.#pending.set(key, { labels, value })
  }
}

interface Series<L extends string> {
  labels: Record<L, string>
  /** per bucket (upper bounds in the configured order), not cumulative; the last one is +Inf's own */
  buckets: number[]
  sum: number
  count: number
}

type HistogramValues<L extends string> = MetricObjectWithValues<MetricValueWithName<L | 'le'>>

/**
 * A histogram kept by hand: observe() is a bucket search and three additions.
 * prom-client's Histogram is the metric registered (its name, help, type,
 * reset), only the values it reports are these.
 */
export class TalliedHistogram<L extends string> extends Histogram<L> {
  // Made by reset(), which prom-client's constructor calls (before this class's fields exist).
  declare private series: Map<string, Series<L>>
  readonly #bounds: readonly number[]
  readonly #name: string
  readonly #help: string
  readonly #aggregator: string

  constructor (configuration: HistogramConfiguration<L> & { buckets: number[] }) {
    super(configuration)
    // In the order given, as prom-client keeps them (it does not sort them either).
    this.#bounds = [...configuration.buckets]
    this.#name = configuration.name
    this.#help = configuration.help
    this.#aggregator = configuration.aggregator ?? 'sum'
  }

  /** Records in the series `key` names (its label values, joined): false when there is none yet (then `begin` it). */
  record (key: string, value: number): boolean {
    const series = this.series.get(key)
    if (series === undefined) return false
    const bounds = this.#bounds
    // The first bound not below the value, as prom-client's findBound.
    let index = 0
    while (index < bounds.length && !(value <= (bounds[index] as number))) index++
    series.buckets[index] = (series.buckets[index] as number) + 1
    series.sum += value
    series.count++
    return true
  }

  /** A new series: its labels (made once, here) and its first value. */
  begin (key: string, labels: Record<L, string>, value: number): void {
    this.series.set(key, { labels, buckets: new Array<number>(this.#bounds.length + 1).fill(0), sum: 0, count: 0 })
    this.record(key, value)
  }

  override reset (): void {
    super.reset()
    this.series = new Map()
  }

  // What prom-client's Histogram reports, in its shape: cumulative buckets, +Inf, sum, count per series.
  // (The registry asks for this one for the text format; prom-client's types do not declare it.)
  async getForPromString (): Promise<HistogramValues<L>> {
    const values: Array<MetricValueWithName<L | 'le'>> = []
    const name = this.#name
    const bucketName = `${name}_bucket`
    for (const series of this.series.values()) {
      let cumulative = 0
      this.#bounds.forEach((bound, index) => {
        cumulative += series.buckets[index] as number
        values.push(valuePair({ le: bound }, cumulative, bucketName, null, series.labels))
      })
      values.push(
        valuePair({ le: '+Inf' }, series.count, bucketName, null, series.labels),
        valuePair({}, series.sum, `${name}_sum`, undefined, series.labels),
        valuePair({}, series.count, `${name}_count`, undefined, series.labels)
      )
    }
    return { name, help: this.#help, type: 'histogram', values, aggregator: this.#aggregator } as unknown as HistogramValues<L>
  }

  // For the JSON form: the series' labels spread into each value's (prom-client's splayLabels).
  override async get (): Promise<HistogramValues<L>> {
    const data = await this.getForPromString()
    data.values = data.values.map((value) => {
      const { sharedLabels, ...rest } = value as typeof value & { sharedLabels: Record<string, string> }
      return { ...rest, labels: { ...rest.labels, ...sharedLabels } }
    })
    return data
  }
}

function valuePair (labels: Record<string, string | number>, value: number, metricName: string, exemplar: null | undefined, sharedLabels: Record<string, string>): MetricValueWithName<never> {
  return { labels, sharedLabels, value, metricName, exemplar } as unknown as MetricValueWithName<never>
}
