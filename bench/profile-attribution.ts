import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { packageOf, type CpuProfile } from './cpuprofile-top.ts'

/**
 * Who caused the CPU time of a create: the self time of two .cpuprofile files
 * (baseline, gateway; written by `node bench/profile.ts --out DIR`), each
 * sample charged to the nearest frame on its stack that is neither node core
 * nor native (a syscall or V8 builtin): to a node_modules package, or to a file
 * of the gateway's dist/. What has no such frame (the HTTP parser, the event
 * loop) stays "node: core"; the garbage collector and V8's own time stay apart.
 * Only the load is counted: the last --load-seconds (profile.ts's --duration) of the last long busy run.
 * fastify is split by file (its hook runner, reply, routing...).
 * Per request, gateway minus baseline, optionally scaled so that the rows sum
 * to a CPU-per-request difference measured without the profiler (--scale-to).
 *
 *   node bench/profile-attribution.ts --baseline b.cpuprofile --baseline-requests N
 *        --gateway g.cpuprofile --gateway-requests M [--scale-to µs]
 */
const { values: flags } = parseArgs({
  options: {
    baseline: { type: 'string' },
    gateway: { type: 'string' },
    'baseline-requests': { type: 'string' },
    'gateway-requests': { type: 'string' },
    'scale-to': { type: 'string' },
    'load-seconds': { type: 'string', default: '15' }
  }
})

interface Node { id: number, callFrame: { functionName: string, url: string }, children?: number[] }

function categoryOf (url: string, functionName: string): string | null {
  if (url === '' || url.startsWith('node:')) return null
  const dist = url.lastIndexOf('/dist/')
  if (dist !== -1 && !url.includes('/node_modules/')) return 'src/' + url.slice(dist + '/dist/'.length).replace(/\.js$/, '.ts')
  const fastify = /\/node_modules\/fastify\/(.*)$/.exec(url)
  if (fastify !== null) return `fastify/${fastify[1]}`
  return packageOf(url, functionName)
}

/** µs of busy time per category during the load, and the load's busy total. */
export function attribute (profile: CpuProfile, loadSeconds: number): { byCategory: Map<string, number>, busyUs: number } {
  const byId = new Map((profile.nodes as Node[]).map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes as Node[]) for (const child of node.children ?? []) parent.set(child, node.id)
  const causeCache = new Map<number, string>()
  const causeOf = (id: number): string => {
    const cached = causeCache.get(id)
    if (cached !== undefined) return cached
    const node = byId.get(id)!
    const name = node.callFrame.functionName
    let cause: string
    if (name === '(garbage collector)' || name === '(program)') cause = name
    else {
      const own = categoryOf(node.callFrame.url, name)
      const up = parent.get(id)
      cause = own ?? (up === undefined || byId.get(up)?.callFrame.functionName === '(root)' ? 'node: core (HTTP parser, event loop)' : causeOf(up))
    }
    causeCache.set(id, cause)
    return cause
  }
  const bucketUs = 100_000
  const stamps: number[] = []
  let at = profile.startTime
  for (const delta of profile.timeDeltas) stamps.push(at += delta)
  const busyByBucket: number[] = []
  profile.samples.forEach((id, index) => {
    if (byId.get(id)?.callFrame.functionName === '(idle)') return
    const bucket = Math.floor((stamps[index]! - profile.startTime) / bucketUs)
    busyByBucket[bucket] = (busyByBucket[bucket] ?? 0) + (profile.timeDeltas[index] ?? 0)
  })
  // The last long run of buckets more than 10% busy is start-up (maybe), sanity check and load; the drain after it is idle.
  const width = Math.round(loadSeconds * 1_000_000 / bucketUs)
  // (A noisy machine starves a process now and then: a gap shorter than a second does not end a run.)
  let end = -1
  let runStart = -1
  let lastBusy = -1
  for (let bucket = 0; bucket <= busyByBucket.length + 10; bucket++) {
    const busy = (busyByBucket[bucket] ?? 0) > 0.1 * bucketUs
    if (busy) {
      if (runStart === -1) runStart = bucket
      lastBusy = bucket
    } else if (runStart !== -1 && bucket - lastBusy >= 10) {
      if (lastBusy - runStart + 1 >= width / 2) end = lastBusy
      runStart = -1
    }
  }
  if (end === -1) throw new Error(`no run of ${loadSeconds / 2} s under load in this profile`)
  const window = { from: Math.max(0, end - width + 1), to: end }
  const byCategory = new Map<string, number>()
  let busyUs = 0
  profile.samples.forEach((id, index) => {
    const bucket = Math.floor((stamps[index]! - profile.startTime) / bucketUs)
    if (bucket < window.from || bucket > window.to) return
    const node = byId.get(id)
    if (node === undefined || node.callFrame.functionName === '(idle)') return
    const delta = profile.timeDeltas[index] ?? 0
    busyUs += delta
    const cause = causeOf(id)
    byCategory.set(cause, (byCategory.get(cause) ?? 0) + delta)
  })
  return { byCategory, busyUs }
}

if (import.meta.main) {
  if (flags.baseline === undefined || flags.gateway === undefined) throw new Error('--baseline and --gateway: .cpuprofile files')
  const read = (file: string): CpuProfile => JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const baseline = attribute(read(flags.baseline), Number(flags['load-seconds']))
  const gateway = attribute(read(flags.gateway), Number(flags['load-seconds']))
  const baselineRequests = Number(flags['baseline-requests'])
  const gatewayRequests = Number(flags['gateway-requests'])
  const names = [...new Set([...baseline.byCategory.keys(), ...gateway.byCategory.keys()])]
  const extra = (name: string): number => (gateway.byCategory.get(name) ?? 0) / gatewayRequests - (baseline.byCategory.get(name) ?? 0) / baselineRequests
  const total = gateway.busyUs / gatewayRequests - baseline.busyUs / baselineRequests
  const scale = flags['scale-to'] === undefined ? 1 : Number(flags['scale-to']) / total
  process.stdout.write(`profiled busy per request: baseline ${(baseline.busyUs / baselineRequests).toFixed(1)} µs, gateway ${(gateway.busyUs / gatewayRequests).toFixed(1)} µs, extra ${total.toFixed(1)} µs; scale ${scale.toFixed(3)}\n`)
  process.stdout.write(`${'charged to'.padEnd(48)} ${'baseline'.padStart(9)} ${'gateway'.padStart(9)} ${'extra'.padStart(9)} ${'scaled'.padStart(9)}  (µs/request)\n`)
  for (const name of names.sort((a, b) => extra(b) - extra(a))) {
    const cell = (value: number): string => value.toFixed(1).padStart(9)
    process.stdout.write(`${name.slice(0, 48).padEnd(48)} ${cell((baseline.byCategory.get(name) ?? 0) / baselineRequests)} ${cell((gateway.byCategory.get(name) ?? 0) / gatewayRequests)} ${cell(extra(name))} ${cell(extra(name) * scale)}\n`)
  }
}
