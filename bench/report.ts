import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { LoadResult } from './load.ts'
import type { ScenarioName, Side } from './scenarios.ts'
import { pollingLines, type PollingRecord } from './polling.ts'
import { archiveLines, archiveReadRuns, archiveSummary, type ArchiveRecord } from './archive.ts'

/** Summaries, targets, and the three outputs: console table, latest.json, latest.md. */
export interface ScenarioRecord {
  name: ScenarioName
  what: string
  connections: number
  overallRate: number | null
  warmup: Partial<Record<Side, LoadResult>>
  /** one entry per round; sides alternate which one goes first */
  rounds: Array<{ first: Side, baseline: LoadResult, gateway: LoadResult }>
  gatewayRssMb: number | null
  /** the baseline's, for reference: what Node itself takes on this machine */
  baselineRssMb: number | null
  /**
   * Redis mode: script calls Redis ran per gateway request over the scenario (INFO commandstats).
   * Each is a round trip, but not each is waited for: a create's settlement is sent behind its
   * answer (store/write-behind.ts), so the request path waits for one of the two a create makes.
   */
  redisRoundTripsPerRequest?: number | null
  /**
   * Of those, the ones a request waited for: the script calls less the ones the gateway says
   * it sent behind an answer (its vg_redis_writes_behind_total over the same scenario).
   */
  redisWaitedRoundTripsPerRequest?: number | null
}

export interface BenchRecord {
  date: string
  node: string
  cpu: string
  cores: number
  mode: 'full' | 'smoke'
  settings: { rounds: number, durationS: number, warmupS: number, connections: number, highConnections: number, fixedRate: { rate: number, connections: number }, gatewayFlags: string }
  scenarios: ScenarioRecord[]
  highConcurrency: { connections: number, run: LoadResult, rssMb: number | null, baseline: { run: LoadResult, rssMb: number | null } | null } | null
  /** many clients on one running task (bench/polling.ts); null when left out */
  polling: PollingRecord | null
  /** a tenant's big results archived while another tenant reads (bench/archive.ts); null when left out */
  archive: ArchiveRecord | null
  elapsedS: number
}

export interface SideSummary {
  rps: number
  p50: number
  p99: number
  max: number
  /** server CPU time per response, µs */
  cpuUs: number | null
  errors: number
  non2xx: number
}

export interface Target {
  name: string
  value: number | null
  limit: string
  pass: boolean
  /** smoke mode reports the performance targets but only enforces errors */
  enforced: boolean
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  if (sorted.length === 0) return Number.NaN
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

const round = (value: number, digits = 2): number => Math.round(value * 10 ** digits) / 10 ** digits

export function summarize (runs: LoadResult[]): SideSummary {
  return {
    rps: Math.round(median(runs.map((run) => run.rps))),
    p50: round(median(runs.map((run) => run.p50)), 3),
    p99: round(median(runs.map((run) => run.p99)), 3),
    max: round(Math.max(...runs.map((run) => run.max)), 3),
    cpuUs: runs.some((run) => run.serverCpuUs === null) ? null : Math.round(median(runs.map((run) => run.serverCpuUs as number))),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    non2xx: runs.reduce((sum, run) => sum + run.non2xx, 0)
  }
}

function allRuns (scenario: ScenarioRecord, side: Side): LoadResult[] {
  return scenario.rounds.map((entry) => entry[side])
}

export interface ScenarioSummary {
  baseline: SideSummary
  gateway: SideSummary
  /** gateway req/s ÷ baseline req/s (medians) */
  ratio: number
  /** gateway CPU per request ÷ baseline CPU per request: the cost ratio, robust to a busy machine */
  cpuCost: number | null
  p99DeltaMs: number
}

export function scenarioSummary (scenario: ScenarioRecord): ScenarioSummary {
  const baseline = summarize(allRuns(scenario, 'baseline'))
  const gateway = summarize(allRuns(scenario, 'gateway'))
  const cpuCost = baseline.cpuUs === null || gateway.cpuUs === null ? null : round(gateway.cpuUs / baseline.cpuUs, 3)
  return { baseline, gateway, ratio: round(gateway.rps / baseline.rps, 3), cpuCost, p99DeltaMs: round(gateway.p99 - baseline.p99, 3) }
}

/** Every load run of the bench (warm-ups included): for the error count. */
function everyRun (record: BenchRecord): LoadResult[] {
  const runs = record.scenarios.flatMap((scenario) => [
    ...Object.values(scenario.warmup), ...allRuns(scenario, 'baseline'), ...allRuns(scenario, 'gateway')
  ])
  if (record.highConcurrency !== null) runs.push(record.highConcurrency.run)
  if (record.highConcurrency?.baseline != null) runs.push(record.highConcurrency.baseline.run)
  if (record.polling !== null) runs.push(record.polling.storm.run)
  if (record.archive !== null) runs.push(...archiveReadRuns(record.archive))
  return runs
}

export function failedRequests (record: BenchRecord): number {
  return everyRun(record).reduce((sum, run) => sum + run.errors + run.non2xx, 0)
}

// Issue 18's restated targets (medians of alternating rounds in one run).
const ratioTargets: Array<[ScenarioName, number]> = [['create', 0.75], ['create-redis', 0.60], ['poll', 1.3]]
const createCpuCostTarget = 1.35
const redisRoundTripsTarget = 1
const rssOverBaselineTargetMb = 64

export function evaluateTargets (record: BenchRecord): Target[] {
  const enforced = record.mode === 'full'
  const targets: Target[] = []
  for (const [name, minimum] of ratioTargets) {
    // A scenario left out (--only, --no-redis) has no target.
    const scenario = record.scenarios.find((entry) => entry.name === name)
    if (scenario === undefined) continue
    const { ratio } = scenarioSummary(scenario)
    targets.push({ name: `${name}: gateway/baseline req/s`, value: ratio, limit: `≥ ${minimum.toFixed(2)}`, pass: ratio >= minimum, enforced })
  }
  const create = record.scenarios.find((entry) => entry.name === 'create')
  if (create !== undefined) {
    const { cpuCost } = scenarioSummary(create)
    targets.push({ name: 'create: CPU per request, gateway ÷ baseline', value: cpuCost, limit: `≤ ${createCpuCostTarget}`, pass: cpuCost !== null && cpuCost <= createCpuCostTarget, enforced })
  }
  const createRedis = record.scenarios.find((entry) => entry.name === 'create-redis')
  if (createRedis?.redisWaitedRoundTripsPerRequest != null) {
    // The figure is round trips on the request path: the ones sent behind the answer are reported beside it, not counted.
    const waited = createRedis.redisWaitedRoundTripsPerRequest
    const all = createRedis.redisRoundTripsPerRequest ?? null
    const behind = all === null ? '' : `; ${all} script calls in all (INFO commandstats), ${Math.round((all - waited) * 100) / 100} sent behind the answer`
    targets.push({ name: `create-redis: Redis round trips per create on the request path${behind}`, value: waited, limit: `≤ ${redisRoundTripsTarget}`, pass: waited <= redisRoundTripsTarget, enforced })
  }
  // A dialect is a mapping, not a second pipeline: its create runs within 5 % of the native one's throughput.
  const native = record.scenarios.find((entry) => entry.name === 'create')
  const openai = record.scenarios.find((entry) => entry.name === 'openai-create')
  if (native !== undefined && openai !== undefined) {
    const ratio = Math.round(scenarioSummary(openai).ratio / scenarioSummary(native).ratio * 1000) / 1000
    targets.push({ name: 'openai-create: its gateway/baseline ratio ÷ create\'s', value: ratio, limit: '≥ 0.95', pass: ratio >= 0.95, enforced })
  }
  const fixed = record.scenarios.find((entry) => entry.name === 'fixed-rate')
  if (fixed !== undefined) {
    const delta = scenarioSummary(fixed).p99DeltaMs
    targets.push({ name: 'fixed-rate: gateway p99 − baseline p99 (ms)', value: delta, limit: '≤ 1', pass: delta <= 1, enforced })
  }
  if (record.highConcurrency !== null) {
    const rss = record.highConcurrency.rssMb
    const baselineRss = record.highConcurrency.baseline?.rssMb ?? null
    const reference = baselineRss === null ? '' : ` (baseline proxy: ${baselineRss})`
    const limit = baselineRss === null ? null : baselineRss + rssOverBaselineTargetMb
    targets.push({ name: `gateway RSS after ${record.settings.highConnections} connections (MB)${reference}`, value: rss, limit: limit === null ? `≤ baseline + ${rssOverBaselineTargetMb}` : `≤ ${limit}`, pass: rss !== null && limit !== null && rss <= limit, enforced })
  }
  if (record.archive !== null) {
    const summary = archiveSummary(record.archive)
    const growth = record.archive.rssGrowthMb
    targets.push({ name: 'archive: gateway RSS growth over the run (MB)', value: growth, limit: '≤ 64', pass: growth !== null && growth <= 64, enforced })
    targets.push({ name: 'archive: throughput ÷ plain undici download-to-file', value: summary.ratio, limit: '≥ 0.80', pass: summary.ratio >= 0.8, enforced })
    targets.push({ name: 'archive: other tenant\'s read p99 while archiving − without (ms)', value: summary.p99DeltaMs, limit: '≤ 2', pass: summary.p99DeltaMs <= 2, enforced })
  }
  if (record.polling !== null) {
    const { storm, events } = record.polling
    targets.push({ name: `polling: upstream reads per second, ${storm.clients} clients on one task`, value: storm.upstreamReadsPerS, limit: '≤ 1', pass: storm.upstreamReadsPerS <= 1, enforced })
    targets.push({ name: `events: subscribers that received the end (of ${events.subscribers})`, value: events.receivedEnd, limit: `= ${events.subscribers}`, pass: events.receivedEnd === events.subscribers, enforced: true })
  }
  const failed = failedRequests(record)
  targets.push({ name: 'failed requests (errors + non-2xx)', value: failed, limit: '= 0', pass: failed === 0, enforced: true })
  return targets
}

const columns = ['scenario', 'side', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'CPU µs/req', 'errors', 'non-2xx', 'RSS MB', 'gateway vs baseline']

function rows (record: BenchRecord): string[][] {
  const out: string[][] = []
  const cells = (summary: SideSummary): string[] => [
    String(summary.rps), summary.p50.toFixed(2), summary.p99.toFixed(2), summary.max.toFixed(1), String(summary.cpuUs ?? '?'), String(summary.errors), String(summary.non2xx)
  ]
  for (const scenario of record.scenarios) {
    const { baseline, gateway, ratio, cpuCost, p99DeltaMs } = scenarioSummary(scenario)
    const conns = scenario.overallRate === null ? String(scenario.connections) : `${scenario.connections} @ ${scenario.overallRate}/s`
    const cpu = cpuCost === null ? '' : `, CPU/req ×${cpuCost.toFixed(2)}`
    const versus = scenario.overallRate === null ? `×${ratio.toFixed(2)} req/s${cpu}` : `p99 ${p99DeltaMs >= 0 ? '+' : ''}${p99DeltaMs.toFixed(2)} ms${cpu}`
    out.push([scenario.name, 'baseline', conns, ...cells(baseline), scenario.baselineRssMb == null ? '' : String(scenario.baselineRssMb), ''])
    out.push(['', 'gateway', '', ...cells(gateway), scenario.gatewayRssMb === null ? '?' : String(scenario.gatewayRssMb), versus])
  }
  const high = record.highConcurrency
  if (high !== null) {
    if (high.baseline != null) out.push(['create', 'baseline', String(high.connections), ...cells(summarize([high.baseline.run])), high.baseline.rssMb === null ? '?' : String(high.baseline.rssMb), ''])
    out.push([high.baseline == null ? 'create' : '', 'gateway', high.baseline == null ? String(high.connections) : '', ...cells(summarize([high.run])), high.rssMb === null ? '?' : String(high.rssMb), '(one run each, RSS target)'])
  }
  return out
}

export function consoleTable (record: BenchRecord): string {
  const table = [columns, ...rows(record)]
  const widths = columns.map((_, index) => Math.max(...table.map((row) => (row[index] ?? '').length)))
  return table.map((row) => row.map((cell, index) => index < 3 || index === row.length - 1 ? cell.padEnd(widths[index] as number) : cell.padStart(widths[index] as number)).join('  ').trimEnd()).join('\n')
}

export function targetLines (targets: Target[]): string[] {
  return targets.map((target) => {
    const verdict = target.pass ? 'pass' : (target.enforced ? 'FAIL' : 'miss (not enforced in smoke mode)')
    return `${target.name}: ${target.value ?? 'n/a'} (target ${target.limit}) ${verdict}`
  })
}

function markdown (record: BenchRecord, targets: Target[]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  const { settings } = record
  return [
    `# video-gateway bench: ${record.mode === 'smoke' ? 'smoke run (figures not meaningful)' : 'latest run'}`,
    '',
    `- Date: ${record.date}`,
    `- Node: ${record.node}`,
    `- CPU: ${record.cpu} (${record.cores} cores, shared by the load generator, the fixed upstream and the server under test)`,
    `- Rounds: ${settings.rounds} per scenario, baseline and gateway alternating, ${settings.durationS} s each after a ${settings.warmupS} s warm-up; figures are medians of the rounds (max: the largest)`,
    `- Load: autocannon, ${settings.connections} connections; fixed-rate: ${settings.fixedRate.rate} req/s over ${settings.fixedRate.connections} connection(s)`,
    `- Gateway: \`node ${settings.gatewayFlags === '' ? '' : settings.gatewayFlags + ' '}dist/server.js\`, LOG_LEVEL=info, access log to /dev/null`,
    `- Whole run: ${record.elapsedS} s`,
    '',
    line(columns),
    line(columns.map(() => '---')),
    ...rows(record).map(line),
    '',
    'The `poll` scenario reads a finished task (the fixed upstream answers `completed`), so the gateway serves it from its status cache, as it would in production; the baseline asks the upstream every time.',
    '',
    ...(record.polling === null ? [] : ['Many clients on one running task:', '', ...pollingLines(record.polling), '']),
    ...(record.archive === null ? [] : ['Archive (a tenant\'s results archived while another tenant reads):', '', ...archiveLines(record.archive), '']),
    line(['target', 'value', 'limit', 'result']),
    line(['---', '---', '---', '---']),
    ...targets.map((target) => line([target.name, String(target.value ?? 'n/a'), target.limit, target.pass ? 'pass' : (target.enforced ? '**FAIL**' : 'miss (smoke: not enforced)')])),
    ''
  ].join('\n')
}

export function writeResults (directory: string, record: BenchRecord, targets: Target[]): void {
  mkdirSync(directory, { recursive: true })
  const summaries = Object.fromEntries(record.scenarios.map((scenario) => [scenario.name, scenarioSummary(scenario)]))
  writeFileSync(join(directory, 'latest.json'), JSON.stringify({ ...record, summaries, targets }, null, 2) + '\n')
  writeFileSync(join(directory, 'latest.md'), markdown(record, targets))
}
