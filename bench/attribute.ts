import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { runLoad } from './load.ts'
import { installCleanup, killAllNow, startGateway, startOwnServer, stop, type Started } from './processes.ts'
import { scenarios, type Side } from './scenarios.ts'
import { buildGateway, prepareSecrets, sanityCheck } from './setup.ts'

/**
 * Side run for "Where a create's time goes" (docs/benchmark.md): per create,
 * on the gateway and on the baseline, the async resources created (promises,
 * timers, sockets...), the bytes allocated and the GCs, from
 * bench/attribute-preload.ts; in Redis mode also every Redis command the
 * gateway sent (MONITOR, its connections recognised by a key prefix of this
 * run), per create, and INFO commandstats of the whole server as a cross-check.
 * The async hook slows the servers: no timing comes from here.
 *
 *   node bench/attribute.ts [--store memory|redis] [--duration 8] [--no-build]
 */
const root = fileURLToPath(new URL('..', import.meta.url))
const { values: flags } = parseArgs({
  allowNegative: true,
  options: {
    store: { type: 'string', default: 'memory' },
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '32' },
    build: { type: 'boolean', default: true }
  }
})
const redisUrl = process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '' ? process.env.REDIS_URL : 'redis://127.0.0.1:6379'
const preload = join(root, 'bench', 'attribute-preload.ts')

interface Window {
  created: Record<string, number>
  allocatedBytes: number
  gcs: Record<string, number>
}

async function readWindow (file: string): Promise<Window> {
  for (let tries = 0; tries < 100 && !existsSync(file); tries++) await sleep(50)
  return JSON.parse(readFileSync(file, 'utf8')) as Window
}

/** Every command of the connections that touched `prefix`, while `during` runs. */
async function monitorCommands (prefix: string, during: () => Promise<void>): Promise<Map<string, number>> {
  const client = new Redis(redisUrl)
  const monitor = await client.monitor()
  // ioredis's monitor mode sometimes loses its place in a busy shared Redis: the figure is then not to be had, the run goes on.
  let lost: Error | null = null
  monitor.on('error', (error: Error) => { lost ??= error })
  const ours = new Set<string>()
  const bySource = new Map<string, Map<string, number>>()
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    const touchesOurs = args.some((arg) => arg.startsWith(prefix))
    // Every script of every client runs as "lua": only the commands on this run's keys are ours.
    if (source === 'lua' && !touchesOurs) return
    if (touchesOurs) ours.add(source)
    let commands = bySource.get(source)
    if (commands === undefined) bySource.set(source, commands = new Map())
    // Commands a Lua script runs come from source "lua": apart from the ones sent over the socket.
    const name = (source === 'lua' ? 'in Lua: ' : '') + (args[0] ?? '').toLowerCase()
    commands.set(name, (commands.get(name) ?? 0) + 1)
  })
  await during()
  await sleep(300)
  monitor.disconnect()
  client.disconnect()
  if (lost !== null) throw new Error(`MONITOR failed (${(lost as Error).message}): run again`)
  const total = new Map<string, number>()
  for (const source of ours) for (const [name, count] of bySource.get(source) ?? []) total.set(name, (total.get(name) ?? 0) + count)
  return total
}

/** calls per command from INFO commandstats (cmdstat_evalsha:calls=12,...) */
async function commandStats (): Promise<Map<string, number>> {
  const client = new Redis(redisUrl)
  const info = await client.info('commandstats')
  client.disconnect()
  return new Map([...info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((match) => [match[1] as string, Number(match[2])]))
}

async function measure (side: Side, server: Started, file: string, tenantKey: string, prefix: string | null): Promise<void> {
  const taskId = await sanityCheck(side, server.url, tenantKey)
  const connections = Number(flags.connections)
  const create = scenarios({ tenantKey, scopedTaskId: taskId, upstreamTaskId: taskId, connections, fixedRate: { rate: 1000, connections: 1 } })[0]!
  const { path, ...request } = create.request(side)
  const load = async (durationS: number): Promise<number> =>
    (await runLoad({ url: server.url + path, ...request, connections, durationS })).requests
  await load(2)
  let requests = 0
  const run = async (): Promise<void> => {
    server.child.kill('SIGWINCH')
    await sleep(100)
    requests = await load(Number(flags.duration))
    server.child.kill('SIGWINCH')
  }
  const statsBefore = prefix === null ? null : await commandStats()
  const commands = prefix === null ? null : await monitorCommands(prefix, run)
  const statsAfter = prefix === null ? null : await commandStats()
  if (prefix === null) await run()
  const window = await readWindow(file)
  const per = (value: number): string => (value / requests).toFixed(2)
  const say = (line: string): void => { process.stdout.write(line + '\n') }
  say(`\n=== ${side}, ${requests} creates (${flags.store} store)`)
  say(`allocated ${(window.allocatedBytes / requests / 1024).toFixed(1)} KB per create; GCs in the window ${JSON.stringify(window.gcs)}`)
  const created = Object.entries(window.created).sort((a, b) => b[1] - a[1])
  say(`async resources per create: ${per(created.reduce((sum, [, count]) => sum + count, 0))} (${created.map(([type, count]) => `${type} ${per(count)}`).join(', ')})`)
  if (commands !== null) {
    const sent = [...commands].filter(([name]) => !name.startsWith('in Lua: ')).reduce((sum, [, count]) => sum + count, 0)
    say(`Redis commands sent per create: ${per(sent)}; with the ones Lua ran: ${[...commands].sort((a, b) => b[1] - a[1]).map(([name, count]) => `${name} ${per(count)}`).join(', ')}`)
    // The whole server's counters, as a cross-check: they include everyone else's traffic on a shared Redis (and the MONITOR itself).
    const delta = [...(statsAfter ?? new Map<string, number>())].map(([name, calls]) => [name, calls - (statsBefore?.get(name) ?? 0)] as const).filter(([, calls]) => calls > 0)
    say(`INFO commandstats, whole server, per create: ${delta.sort((a, b) => b[1] - a[1]).slice(0, 8).map(([name, calls]) => `${name} ${per(calls)}`).join(', ')}`)
  }
}

async function main (): Promise<void> {
  installCleanup()
  if (flags.build) buildGateway(root)
  const secrets = prepareSecrets()
  process.once('exit', secrets.remove)
  const upstream = await startOwnServer('fixed upstream', join(root, 'bench', 'fixed-upstream.ts'), [secrets.upstreamKey])
  const redis = flags.store === 'redis'
  const prefix = `vgattr${randomBytes(4).toString('hex')}:`

  const baselineFile = join(secrets.dir, 'baseline.json')
  process.env.ATTRIBUTE_OUT = baselineFile
  const baseline = await startOwnServer('baseline proxy', join(root, 'bench', 'baseline-proxy.ts'), [upstream.url, secrets.upstreamKey, '128'], ['--import', preload])
  await measure('baseline', baseline, baselineFile, secrets.tenantKey, null)
  await stop(baseline)

  const gatewayFile = join(secrets.dir, 'gateway.json')
  const gateway = await startGateway({
    name: 'gateway',
    serverJs: join(root, 'dist', 'server.js'),
    cwd: secrets.dir,
    nodeFlags: ['--import', preload],
    env: { ...secrets.gatewayEnv(upstream.url, redis ? redisUrl : ''), REDIS_KEY_PREFIX: prefix, ATTRIBUTE_OUT: gatewayFile }
  })
  await measure('gateway', gateway, gatewayFile, secrets.tenantKey, redis ? prefix : null)
  await stop(gateway)
  await stop(upstream)
  if (redis) {
    // This run's keys go with it.
    const client = new Redis(redisUrl)
    for await (const keys of client.scanStream({ match: `${prefix}*`, count: 1000 })) if ((keys as string[]).length > 0) await client.del(...(keys as string[]))
    client.disconnect()
  }
  rmSync(baselineFile, { force: true })
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`attribute failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  killAllNow()
  process.exit(1)
})
