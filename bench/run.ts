import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { archiveLines, runArchiveFigures } from './archive.ts'
import { runPollingFigures, pollingLines } from './polling.ts'
import { Redis } from 'ioredis'
import { runLoad, type LoadResult } from './load.ts'
import { cpuTimeMs, installCleanup, killAllNow, rssMb, startGateway, startOwnServer, stop, type Started } from './processes.ts'
import { consoleTable, evaluateTargets, failedRequests, targetLines, writeResults, type BenchRecord, type ScenarioRecord } from './report.ts'
import { scenarios, type Scenario, type Side } from './scenarios.ts'
import { buildGateway, prepareSecrets, sanityCheck, seedBenchDatabase } from './setup.ts'

/**
 * npm run bench [-- --smoke] [--no-build] [--no-redis] [--only create,poll,archive] [--rounds N] [--duration S] [--warmup S] [--out DIR]
 *                 [--fixed-connections N] [--server-js path/to/server.js] [--gateway-flags="--max-semi-space-size=8"]
 *                 [--database postgres://...]
 *
 * --database: the gateway in database mode on that PostgreSQL (migrated, and the bench tenant
 * imported, first); the request path must not touch the database, so the figures must not move.
 *
 * Fixed upstream, baseline proxy and the production gateway, each in its own
 * process on loopback; autocannon in this one. Baseline and gateway take turns
 * (ABBA order) so that machine noise hits both alike. Exit 1: a request failed
 * (or the bench broke); exit 2: a performance target was missed (full mode).
 * --only names scenarios (create, openai-create, create-redis, poll, fixed-rate),
 * create-256 (the 256-connection run; also run by `create`), polling and archive.
 * Results go to --out DIR; by default bench/results/ (committed) for a full run
 * and bench/results/smoke/ (git-ignored) for a smoke run, whose figures mean
 * nothing and must not rewrite tracked files (CI leaves its clone clean), and
 * bench/results/partial/ (git-ignored) for an --only run.
 */
const root = fileURLToPath(new URL('..', import.meta.url))
const { values: flags } = parseArgs({
  allowNegative: true,
  options: {
    smoke: { type: 'boolean', default: false },
    build: { type: 'boolean', default: true },
    redis: { type: 'boolean', default: true },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    'fixed-connections': { type: 'string' },
    only: { type: 'string' },
    'server-js': { type: 'string' },
    'gateway-flags': { type: 'string' },
    out: { type: 'string' },
    database: { type: 'string' }
  }
})
const smoke = flags.smoke
function numberFlag (value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const number = Number(value)
  if (!Number.isFinite(number) || number < 0) throw new Error(`not a usable number: ${value}`)
  return number
}
const settings = {
  rounds: numberFlag(flags.rounds, smoke ? 1 : 5),
  durationS: numberFlag(flags.duration, smoke ? 1 : 4),
  warmupS: numberFlag(flags.warmup, smoke ? 0 : 2),
  connections: 32,
  highConnections: 256,
  fixedRate: { rate: 1000, connections: numberFlag(flags['fixed-connections'], 1) },
  /** node flags the gateway ran with (none: as users run it) */
  gatewayFlags: flags['gateway-flags'] ?? '',
  archive: {
    tasks: smoke ? 4 : 100,
    fileBytes: (smoke ? 1 : 20) * 1024 * 1024,
    concurrency: 8,
    rounds: numberFlag(flags.rounds, smoke ? 1 : 5),
    readRate: 500,
    readConnections: 8,
    quietS: smoke ? 1 : 4,
    warmupTasks: smoke ? 0 : 8,
    timeoutS: smoke ? 30 : 180
  }
}
const redisUrl = process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '' ? process.env.REDIS_URL : 'redis://127.0.0.1:6379'

const say = (line: string): void => { process.stdout.write(line + '\n') }
const describe = (run: LoadResult): string =>
  `${String(run.rps).padStart(6)} req/s  p50 ${run.p50.toFixed(2)}  p99 ${run.p99.toFixed(2)}  max ${run.max.toFixed(1)} ms  CPU ${run.serverCpuUs} µs/req` +
  (run.errors + run.non2xx > 0 ? `  ERRORS ${run.errors} non-2xx ${run.non2xx} ${JSON.stringify(run.statusCodes)}` : '')

async function load (scenario: Scenario, side: Side, server: Started, durationS: number, connections = scenario.connections): Promise<LoadResult> {
  const { path, ...request } = scenario.request(side)
  const cpuBefore = cpuTimeMs(server.pid)
  const result = await runLoad({ url: server.url + path, ...request, connections, durationS, overallRate: scenario.overallRate })
  const cpuAfter = cpuTimeMs(server.pid)
  if (cpuBefore !== null && cpuAfter !== null && result.requests > 0) result.serverCpuUs = Math.round((cpuAfter - cpuBefore) * 1000 / result.requests)
  await sleep(200) // let the closed connections settle before the other side starts
  return result
}

async function runScenario (scenario: Scenario, baseline: Started, gateway: Started): Promise<ScenarioRecord> {
  const servers: Record<Side, Started> = { baseline, gateway }
  const record: ScenarioRecord = {
    name: scenario.name, what: scenario.what, connections: scenario.connections, overallRate: scenario.overallRate ?? null, warmup: {}, rounds: [], gatewayRssMb: null, baselineRssMb: null
  }
  if (settings.warmupS > 0) {
    for (const side of ['baseline', 'gateway'] as const) record.warmup[side] = await load(scenario, side, servers[side], settings.warmupS)
  }
  for (let index = 0; index < settings.rounds; index++) {
    const order: Side[] = index % 2 === 0 ? ['baseline', 'gateway'] : ['gateway', 'baseline']
    const results: Partial<Record<Side, LoadResult>> = {}
    for (const side of order) {
      results[side] = await load(scenario, side, servers[side], settings.durationS)
      say(`  ${scenario.name.padEnd(12)} round ${index + 1}/${settings.rounds}  ${side.padEnd(8)} ${describe(results[side])}`)
    }
    record.rounds.push({ first: order[0] as Side, baseline: results.baseline as LoadResult, gateway: results.gateway as LoadResult })
  }
  record.gatewayRssMb = rssMb(gateway.pid)
  record.baselineRssMb = rssMb(baseline.pid)
  return record
}

/**
 * Script calls the Redis server has run since it started (INFO commandstats: EVAL/EVALSHA and
 * their _RO forms). The gateway's request path talks to Redis only through scripts (MONITOR in
 * bench/attribute.ts sees nothing else on a create), so a call is a round trip, though not always
 * one the request waits for (a create's settlement is sent behind its answer: store/write-behind.ts);
 * the commands inside a script are counted by commandstats too, which is why they are not summed here.
 */
async function redisScriptCalls (url: string): Promise<number> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await client.connect()
    const stats = await client.info('commandstats')
    let calls = 0
    for (const match of stats.matchAll(/^cmdstat_(eval|evalsha|eval_ro|evalsha_ro):calls=(\d+)/gm)) calls += Number(match[2])
    return calls
  } finally {
    client.disconnect()
  }
}

/**
 * The gateway's own count of script calls it sent behind an answer (vg_redis_writes_behind_total).
 * A build without the counter (`--server-js` of one before the write-behind) waited for every call: 0.
 */
async function writesBehind (gatewayUrl: string, metricsToken: string): Promise<number> {
  const answer = await fetch(`${gatewayUrl}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } })
  if (!answer.ok) throw new Error(`GET /metrics answered ${answer.status}`)
  const value = /^vg_redis_writes_behind_total (\d+)$/m.exec(await answer.text())?.[1]
  return value === undefined ? 0 : Number(value)
}

async function main (): Promise<number> {
  const started = Date.now()
  installCleanup()
  if (flags.build) buildGateway(root)
  const secrets = prepareSecrets()
  process.once('exit', secrets.remove)
  const serverJs = flags['server-js'] ?? join(root, 'dist', 'server.js')
  const databaseUrl = flags.database ?? ''
  if (databaseUrl !== '') {
    await seedBenchDatabase(databaseUrl, secrets)
    say(`database mode: tenants in ${databaseUrl.replace(/\/\/[^@/]*@/, '//')} (DATABASE_URL)`)
  }
  const gatewayOptions = (name: string, store: string, env: Record<string, string> = {}): Parameters<typeof startGateway>[0] => ({
    name,
    serverJs,
    cwd: secrets.dir,
    env: { ...secrets.gatewayEnv(upstream.url, store), ...(databaseUrl === '' ? {} : { DATABASE_URL: databaseUrl }), ...env },
    nodeFlags: settings.gatewayFlags.split(' ').filter(Boolean)
  })

  const upstream = await startOwnServer('fixed upstream', join(root, 'bench', 'fixed-upstream.ts'), [secrets.upstreamKey])
  const baseline = await startOwnServer('baseline proxy', join(root, 'bench', 'baseline-proxy.ts'), [upstream.url, secrets.upstreamKey, '128'])
  const gateway = await startGateway(gatewayOptions('gateway', ''))
  const upstreamTaskId = await sanityCheck('baseline', baseline.url, secrets.tenantKey)
  const scopedTaskId = await sanityCheck('gateway', gateway.url, secrets.tenantKey)
  const idleRss = rssMb(gateway.pid)
  say(`upstream ${upstream.url}, baseline ${baseline.url}, gateway ${gateway.url} (pid ${gateway.pid}, RSS ${idleRss} MB idle)`)
  say(`${smoke ? 'SMOKE: ' : ''}${settings.rounds} round(s) × ${settings.durationS} s per side and scenario, ${settings.warmupS} s warm-up\n`)

  const record: BenchRecord = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    mode: smoke ? 'smoke' : 'full',
    settings,
    scenarios: [],
    highConcurrency: null,
    polling: null,
    archive: null,
    elapsedS: 0
  }
  const list = scenarios({ tenantKey: secrets.tenantKey, scopedTaskId, upstreamTaskId, connections: settings.connections, fixedRate: settings.fixedRate })
  const only = flags.only?.split(',')
  for (const scenario of list.filter((entry) => only === undefined || only.includes(entry.name))) {
    if (scenario.store === 'memory') {
      record.scenarios.push(await runScenario(scenario, baseline, gateway))
      continue
    }
    if (!flags.redis) {
      say(`  ${scenario.name}: skipped (--no-redis)`)
      continue
    }
    const redisGateway = await startGateway(gatewayOptions('gateway (redis)', redisUrl))
    try {
      await sanityCheck('gateway (redis)', redisGateway.url, secrets.tenantKey)
      // Round trips per create: the script calls Redis ran during the scenario (the baseline
      // makes none), over the gateway's requests. A shared Redis's other clients count too.
      const callsBefore = await redisScriptCalls(redisUrl)
      const behindBefore = await writesBehind(redisGateway.url, secrets.metricsToken)
      const result = await runScenario(scenario, baseline, redisGateway)
      const commands = (await redisScriptCalls(redisUrl)) - callsBefore
      const behind = (await writesBehind(redisGateway.url, secrets.metricsToken)) - behindBefore
      const requests = [...Object.values(result.warmup), ...result.rounds.map((entry) => entry.gateway)]
        .filter((run) => run !== undefined && run !== result.warmup.baseline)
        .reduce((sum, run) => sum + run.requests, 0)
      result.redisRoundTripsPerRequest = requests === 0 ? null : Math.round(commands / requests * 100) / 100
      result.redisWaitedRoundTripsPerRequest = requests === 0 ? null : Math.round((commands - behind) / requests * 100) / 100
      record.scenarios.push(result)
    } finally {
      await stop(redisGateway)
    }
  }

  if (only === undefined || only.includes('create') || only.includes('create-256')) {
    const create = list[0] as Scenario
    // The same run on the baseline: its RSS is what Node itself takes on this machine under that load.
    const highBaseline = await load(create, 'baseline', baseline, settings.durationS, settings.highConnections)
    const high = await load(create, 'gateway', gateway, settings.durationS, settings.highConnections)
    record.highConcurrency = { connections: settings.highConnections, run: high, rssMb: rssMb(gateway.pid), baseline: { run: highBaseline, rssMb: rssMb(baseline.pid) } }
    say(`  create       ${settings.highConnections} connections baseline ${describe(highBaseline)}  RSS ${record.highConcurrency.baseline?.rssMb} MB`)
    say(`  create       ${settings.highConnections} connections gateway  ${describe(high)}  RSS ${record.highConcurrency.rssMb} MB`)
  }

  if (only === undefined || only.includes('polling')) {
    record.polling = await runPollingFigures({ gatewayUrl: gateway.url, upstreamUrl: upstream.url, tenantKey: secrets.tenantKey, tenantId: secrets.tenantId, gatewaySecret: secrets.gatewaySecret, smoke })
    for (const line of pollingLines(record.polling)) say(`  ${line.slice(2).replaceAll('**', '')}`)
  }

  if (only === undefined || only.includes('archive')) {
    // Its own gateway (memory store), archiving to a temporary directory: its RSS is the archive's alone.
    const archiveDir = mkdtempSync(join(tmpdir(), 'video-gateway-bench-archive-'))
    const removeArchive = (): void => { rmSync(archiveDir, { recursive: true, force: true }) }
    process.once('exit', removeArchive)
    const archiveGateway = await startGateway(gatewayOptions('gateway (archive)', '', {
      ARCHIVE_DIR: archiveDir,
      // The fixed upstream's result links are plain http on loopback.
      ARCHIVE_ALLOWED_SOURCES: '127.0.0.1/32',
      ARCHIVE_CONCURRENCY: String(settings.archive.concurrency)
    }))
    try {
      say(`  archive: gateway pid ${archiveGateway.pid}, RSS ${rssMb(archiveGateway.pid)} MB idle, directory ${archiveDir}`)
      record.archive = await runArchiveFigures({
        gateway: archiveGateway,
        upstreamUrl: upstream.url,
        archiveDir,
        tenantKey: secrets.tenantKey,
        tenantId: secrets.tenantId,
        otherTenantKey: secrets.otherTenantKey,
        otherTenantId: secrets.otherTenantId,
        gatewaySecret: secrets.gatewaySecret,
        settings: settings.archive,
        warmupS: settings.warmupS,
        downloaderScript: join(root, 'bench', 'download-files.ts'),
        say
      })
      for (const line of archiveLines(record.archive)) say(`  ${line.slice(2).replaceAll('**', '')}`)
    } finally {
      await stop(archiveGateway)
      removeArchive()
    }
  }

  await stop(gateway)
  await Promise.all([stop(baseline), stop(upstream)])
  record.elapsedS = Math.round((Date.now() - started) / 1000)

  const targets = evaluateTargets(record)
  // A smoke run or a partial one (--only) must not rewrite the tracked record of a full run.
  const resultsDirectory = flags.out ?? join(root, 'bench', 'results', ...(smoke ? ['smoke'] : only !== undefined ? ['partial'] : []))
  writeResults(resultsDirectory, record, targets)
  say('\n' + consoleTable(record) + '\n')
  for (const line of targetLines(targets)) say(line)
  say(`\nwrote ${join(resultsDirectory, 'latest.json')} and latest.md (${record.elapsedS} s in all)`)
  if (failedRequests(record) > 0) return 1
  return targets.some((target) => target.enforced && !target.pass) ? 2 : 0
}

main().then((code) => {
  process.exit(code)
}, (error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  killAllNow()
  process.exit(1)
})
