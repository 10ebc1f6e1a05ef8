import { readFileSync } from 'node:fs'

/**
 * Where a V8 .cpuprofile (node --cpu-prof) spends its time: self time per
 * package, top functions by self time and by inclusive time. Optionally only
 * the samples of a time window (the load, not the start-up), and per request.
 *
 *   node bench/cpuprofile-top.ts <file.cpuprofile> [top N]
 */
interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  children?: number[]
}

export interface CpuProfile {
  nodes: ProfileNode[]
  /** µs, CLOCK_MONOTONIC (the clock of process.hrtime) */
  startTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface Row {
  name: string
  us: number
  percent: number
}

export interface ProfileSummary {
  /** sampled time without idle, µs */
  busyUs: number
  idleUs: number
  self: Row[]
  inclusive: Row[]
  packages: Row[]
}

export interface SummaryOptions {
  /** only samples taken in [from, to], µs on the profile's clock */
  window?: { fromUs: number, toUs: number }
}

function shortUrl (url: string): string {
  if (url === '') return ''
  const modules = url.lastIndexOf('/node_modules/')
  if (modules !== -1) return url.slice(modules + '/node_modules/'.length)
  const dist = url.lastIndexOf('/dist/')
  if (dist !== -1) return url.slice(dist + 1)
  return url.replace(/^file:\/\/.*\/(bench|src)\//, '$1/')
}

/** node_modules package, node core, the gateway's own code, or a V8 pseudo-frame. */
export function packageOf (url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native: V8 builtins, syscalls)'
  if (url.startsWith('node:')) return 'node: core'
  const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (match !== null) return match[1] as string
  if (url.includes('/dist/')) return 'gateway code (dist/)'
  return shortUrl(url)
}

function rank (totals: Map<string, number>, busyUs: number): Row[] {
  return [...totals].sort((a, b) => b[1] - a[1])
    .map(([name, us]) => ({ name, us, percent: Math.round(us / busyUs * 1000) / 10 }))
}

/** Every function and package, sorted by time (formatSummary shows the top ones). */
export function summarizeProfile (profile: CpuProfile, options: SummaryOptions = {}): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const keyOf = (node: ProfileNode): string => {
    const { functionName, url, lineNumber } = node.callFrame
    const where = shortUrl(url)
    return `${functionName === '' ? '(anonymous)' : functionName}${where === '' ? '' : ` ${where}:${lineNumber + 1}`}`
  }
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const packages = new Map<string, number>()
  const add = (map: Map<string, number>, key: string, us: number): void => { map.set(key, (map.get(key) ?? 0) + us) }
  let busyUs = 0
  let idleUs = 0
  let at = profile.startTime
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0
    at += delta
    if (options.window !== undefined && (at < options.window.fromUs || at > options.window.toUs)) return
    const node = byId.get(id)
    if (node === undefined) return
    if (node.callFrame.functionName === '(idle)') {
      idleUs += delta
      return
    }
    busyUs += delta
    add(self, keyOf(node), delta)
    add(packages, packageOf(node.callFrame.url, node.callFrame.functionName), delta)
    const seen = new Set<string>()
    for (let frameId: number | undefined = id; frameId !== undefined; frameId = parent.get(frameId)) {
      const key = keyOf(byId.get(frameId) as ProfileNode)
      if (key === '(root)' || seen.has(key)) continue
      seen.add(key)
      add(inclusive, key, delta)
    }
  })
  return { busyUs, idleUs, self: rank(self, busyUs), inclusive: rank(inclusive, busyUs), packages: rank(packages, busyUs) }
}

/** The top rows of each table; with `requests`, times per request (µs), else in ms. */
export function formatSummary (summary: ProfileSummary, top: number, requests?: number): string {
  const amount = (us: number): string => requests === undefined ? `${(us / 1000).toFixed(0).padStart(7)} ms` : `${(us / requests).toFixed(1).padStart(7)} µs/req`
  const table = (title: string, rows: Row[]): string =>
    [title, ...rows.map((row) => `${row.percent.toFixed(1).padStart(6)}%  ${amount(row.us)}  ${row.name}`)].join('\n')
  return [
    `busy ${amount(summary.busyUs)}, idle ${(summary.idleUs / 1000).toFixed(0)} ms; percentages are of busy time`,
    '',
    table('SELF TIME BY PACKAGE', summary.packages.slice(0, top)),
    '',
    table('SELF TIME BY FUNCTION', summary.self.slice(0, top)),
    '',
    table('INCLUSIVE TIME BY FUNCTION', summary.inclusive.slice(0, top))
  ].join('\n')
}

if (import.meta.main) {
  const [file, top] = process.argv.slice(2)
  if (file === undefined) throw new Error('usage: node bench/cpuprofile-top.ts <file.cpuprofile> [top N]')
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  process.stdout.write(formatSummary(summarizeProfile(profile), top === undefined ? 25 : Number(top)) + '\n')
}
