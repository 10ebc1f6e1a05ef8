import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { runLoad } from './load.ts'
import { installCleanup, killAllNow, startGateway, startOwnServer, stop, type Started } from './processes.ts'
import { scenarios, type Side } from './scenarios.ts'
import { buildGateway, prepareSecrets, sanityCheck } from './setup.ts'

/**
 * CPU per create of baseline and gateway, split by thread and by user/kernel
 * time (/proc/<pid>/task/<tid>/stat), in alternating rounds (as run.ts):
 * what a CPU profile of the main thread cannot see (the GC's helper threads,
 * the kernel's socket work) next to what it can. Medians and spread of the rounds.
 *
 * With --against, the "baseline" side is a second gateway built from another
 * commit (its dist/server.js): an A/B of two builds under the same noise.
 *
 *   node bench/cpu-threads.ts [--store memory|redis] [--rounds 5] [--duration 4] [--no-build] [--server-js path] [--against path]
 */
const root = fileURLToPath(new URL('..', import.meta.url))
const { values: flags } = parseArgs({
  allowNegative: true,
  options: {
    store: { type: 'string', default: 'memory' },
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '4' },
    build: { type: 'boolean', default: true },
    'server-js': { type: 'string' },
    against: { type: 'string' }
  }
})
const redisUrl = process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '' ? process.env.REDIS_URL : 'redis://127.0.0.1:6379'
const ticksToUs = 1_000_000 / 100 // USER_HZ

type Split = Record<string, number>

/** CPU µs so far per "main user", "main kernel", "<thread name> threads" (all threads of the process). */
function threadTimes (pid: number): Split {
  const split: Split = {}
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    } catch {
      continue // a thread that just ended
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const user = Number(fields[11]) * ticksToUs
    const kernel = Number(fields[12]) * ticksToUs
    if (Number(tid) === pid) {
      split['main thread, user'] = user
      split['main thread, kernel'] = kernel
    } else {
      const key = `other threads (${name.replace(/\d+$/, '')})`
      split[key] = (split[key] ?? 0) + user + kernel
    }
  }
  return split
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

async function main (): Promise<void> {
  installCleanup()
  if (flags.build) buildGateway(root)
  const secrets = prepareSecrets()
  process.once('exit', secrets.remove)
  const upstream = await startOwnServer('fixed upstream', join(root, 'bench', 'fixed-upstream.ts'), [secrets.upstreamKey])
  const startBuild = async (name: string, serverJs: string): Promise<Started> => await startGateway({
    name, serverJs, cwd: secrets.dir, env: secrets.gatewayEnv(upstream.url, flags.store === 'redis' ? redisUrl : '')
  })
  const baseline = flags.against === undefined
    ? await startOwnServer('baseline proxy', join(root, 'bench', 'baseline-proxy.ts'), [upstream.url, secrets.upstreamKey, '128'])
    : await startBuild('gateway (against)', flags.against)
  const gateway = await startBuild('gateway', flags['server-js'] ?? join(root, 'dist', 'server.js'))
  const servers: Record<Side, Started> = { baseline, gateway }
  const taskId = await sanityCheck('gateway', gateway.url, secrets.tenantKey)
  await sanityCheck('baseline', baseline.url, secrets.tenantKey)
  const create = scenarios({ tenantKey: secrets.tenantKey, scopedTaskId: taskId, upstreamTaskId: taskId, connections: 32, fixedRate: { rate: 1000, connections: 1 } })[0]!
  const perRound: Record<Side, Split[]> = { baseline: [], gateway: [] }
  const load = async (side: Side, durationS: number): Promise<Split> => {
    const { path, ...request } = create.request(side)
    const before = threadTimes(servers[side].pid)
    const { requests } = await runLoad({ url: servers[side].url + path, ...request, connections: 32, durationS })
    const after = threadTimes(servers[side].pid)
    const split: Split = {}
    for (const key of Object.keys(after)) split[key] = ((after[key] ?? 0) - (before[key] ?? 0)) / requests
    split.total = Object.values(split).reduce((sum, value) => sum + value, 0)
    split.requests = requests
    await sleep(200)
    return split
  }
  for (const side of ['baseline', 'gateway'] as const) await load(side, 2)
  const rounds = Number(flags.rounds)
  for (let index = 0; index < rounds; index++) {
    const order: Side[] = index % 2 === 0 ? ['baseline', 'gateway'] : ['gateway', 'baseline']
    for (const side of order) {
      const split = await load(side, Number(flags.duration))
      perRound[side].push(split)
      process.stdout.write(`round ${index + 1} ${side.padEnd(8)} ${Math.round(split.total!)} µs/create (${Math.round(split.requests! / Number(flags.duration))} req/s)\n`)
    }
  }
  await Promise.all([stop(gateway), stop(baseline), stop(upstream)])
  const keys = [...new Set([...perRound.baseline, ...perRound.gateway].flatMap((split) => Object.keys(split)))].filter((key) => key !== 'requests')
  const differences = perRound.gateway.map((split, index) => (split.total ?? 0) - (perRound.baseline[index]?.total ?? 0))
  process.stdout.write(`\nCPU µs per create (${flags.store} store${flags.against === undefined ? '' : `; "baseline" is ${flags.against}`}), median of ${rounds} rounds [min–max]\n`)
  const range = (values: number[]): string => `${median(values).toFixed(1)} [${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}]`
  for (const key of keys) {
    const of = (side: Side): number[] => perRound[side].map((split) => split[key] ?? 0)
    process.stdout.write(`${key.padEnd(36)} baseline ${range(of('baseline')).padEnd(18)} gateway ${range(of('gateway')).padEnd(18)} extra ${(median(of('gateway')) - median(of('baseline'))).toFixed(1)}\n`)
  }
  process.stdout.write(`gateway − baseline per round: ${differences.map((value) => value.toFixed(0)).join(', ')}; median ${median(differences).toFixed(1)}\n`)
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`cpu-threads failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  killAllNow()
  process.exit(1)
})
