import { copyFileSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { formatSummary, summarizeProfile, type CpuProfile, type ProfileSummary, type Row } from './cpuprofile-top.ts'
import { runLoad } from './load.ts'
import { installCleanup, killAllNow, startGateway, startOwnServer, stop, type Started } from './processes.ts'
import { scenarios, type ScenarioName, type Side } from './scenarios.ts'
import { buildGateway, prepareSecrets, sanityCheck } from './setup.ts'

/**
 * CPU profiles of the gateway (and the baseline, for comparison) under one
 * bench scenario: `node --cpu-prof`, load, graceful stop (which writes the
 * profile), then where the time went during the load, per request.
 *
 *   node bench/profile.ts [--scenario create|create-redis|poll] [--side both|gateway|baseline]
 *                         [--duration 15] [--no-build] [--top 30] [--out dir]
 */
const root = fileURLToPath(new URL('..', import.meta.url))
const { values: flags } = parseArgs({
  allowNegative: true,
  options: {
    scenario: { type: 'string', default: 'create' },
    side: { type: 'string', default: 'both' },
    duration: { type: 'string', default: '15' },
    connections: { type: 'string', default: '32' },
    build: { type: 'boolean', default: true },
    top: { type: 'string', default: '30' },
    out: { type: 'string' }
  }
})

interface Profiled {
  side: Side
  requests: number
  summary: ProfileSummary
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n)

async function profileSide (side: Side, secrets: ReturnType<typeof prepareSecrets>, upstream: Started): Promise<Profiled> {
  const profileDir = join(secrets.dir, `profile-${side}`)
  const nodeFlags = ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]
  const redisUrl = flags.scenario === 'create-redis' ? (process.env.REDIS_URL ?? 'redis://127.0.0.1:6379') : ''
  const server = side === 'gateway'
    ? await startGateway({ name: 'gateway', serverJs: join(root, 'dist', 'server.js'), cwd: secrets.dir, nodeFlags, env: secrets.gatewayEnv(upstream.url, redisUrl) })
    : await startOwnServer('baseline proxy', join(root, 'bench', 'baseline-proxy.ts'), [upstream.url, secrets.upstreamKey, '128'], nodeFlags)
  const taskId = await sanityCheck(side, server.url, secrets.tenantKey)
  const connections = Number(flags.connections)
  const scenario = scenarios({
    tenantKey: secrets.tenantKey, scopedTaskId: taskId, upstreamTaskId: taskId, connections, fixedRate: { rate: 1000, connections: 8 }
  }).find((entry) => entry.name === flags.scenario as ScenarioName)
  if (scenario === undefined) throw new Error(`unknown scenario ${flags.scenario}`)
  const { path, ...request } = scenario.request(side)
  const fromUs = nowUs()
  const result = await runLoad({ url: server.url + path, ...request, connections, durationS: Number(flags.duration), overallRate: scenario.overallRate })
  const toUs = nowUs()
  process.stdout.write(`${side}: ${result.rps} req/s, p99 ${result.p99} ms, errors ${result.errors}, non-2xx ${result.non2xx}\n`)
  await stop(server)
  const file = readdirSync(profileDir).find((name) => name.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error(`the ${side} wrote no .cpuprofile`)
  if (flags.out !== undefined) copyFileSync(join(profileDir, file), join(flags.out, `${side}-${scenario.name}.cpuprofile`))
  const profile = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as CpuProfile
  return { side, requests: result.requests, summary: summarizeProfile(profile, { window: { fromUs, toUs } }) }
}

/** Per request, gateway minus baseline, by package and by function (self time): what the gateway adds. */
function comparison (baseline: Profiled, gateway: Profiled, top: number): string {
  const perRequest = (rows: Row[], requests: number): Map<string, number> => new Map(rows.map((row) => [row.name, row.us / requests]))
  const cell = (value: number | undefined): string => (value ?? 0).toFixed(1).padStart(9)
  const table = (title: string, base: Map<string, number>, gate: Map<string, number>, limit: number): string[] => {
    const extra = (name: string): number => (gate.get(name) ?? 0) - (base.get(name) ?? 0)
    const names = [...new Set([...base.keys(), ...gate.keys()])].sort((a, b) => extra(b) - extra(a)).slice(0, limit)
    return [`${title.padEnd(60)}  baseline    gateway      extra  (µs/request)`,
      ...names.map((name) => `${name.slice(0, 60).padEnd(60)} ${cell(base.get(name))}  ${cell(gate.get(name))}  ${cell(extra(name))}`)]
  }
  const busy = (profiled: Profiled): number => profiled.summary.busyUs / profiled.requests
  return [
    `CPU per request (busy, profiled): baseline ${busy(baseline).toFixed(1)} µs, gateway ${busy(gateway).toFixed(1)} µs, extra ${(busy(gateway) - busy(baseline)).toFixed(1)} µs`,
    '',
    ...table('BY PACKAGE (self time)', perRequest(baseline.summary.packages, baseline.requests), perRequest(gateway.summary.packages, gateway.requests), Infinity),
    '',
    ...table('BY FUNCTION (self time), largest extra first', perRequest(baseline.summary.self, baseline.requests), perRequest(gateway.summary.self, gateway.requests), top)
  ].join('\n')
}

async function main (): Promise<void> {
  installCleanup()
  if (flags.build) buildGateway(root)
  const secrets = prepareSecrets()
  process.once('exit', secrets.remove)
  const upstream = await startOwnServer('fixed upstream', join(root, 'bench', 'fixed-upstream.ts'), [secrets.upstreamKey])
  const sides: Side[] = flags.side === 'both' ? ['baseline', 'gateway'] : [flags.side as Side]
  process.stdout.write(`profiling under "${flags.scenario}" for ${flags.duration} s at ${flags.connections} connections: ${sides.join(', ')}\n`)
  const results: Profiled[] = []
  for (const side of sides) results.push(await profileSide(side, secrets, upstream))
  await stop(upstream)
  const top = Number(flags.top)
  for (const result of results) process.stdout.write(`\n=== ${result.side.toUpperCase()}, during the load only\n${formatSummary(result.summary, top, result.requests)}\n`)
  const [baseline, gateway] = results
  if (baseline?.side === 'baseline' && gateway?.side === 'gateway') process.stdout.write(`\n=== GATEWAY − BASELINE\n${comparison(baseline, gateway, top)}\n`)
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`profile failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  killAllNow()
  process.exit(1)
})
