import { spawn, type ChildProcess } from 'node:child_process'
import { watch, type FSWatcher } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface, type Interface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTaskIdCodec } from '../src/features/tasks/task-id.ts'
import { archiveTaskPrefix } from './fixtures.ts'
import type { LoadResult } from './load.ts'
import { cpuTimeMs, memoryMb, track, type Started } from './processes.ts'
import { runSteadyLoad } from './steady-load.ts'
import { median } from './report.ts'

/**
 * The archive scenario: a tenant's tasks finish with one big result file each
 * (served by the fixed upstream), the gateway archives them to its local
 * directory, and meanwhile another tenant reads its own task at a fixed rate.
 * Each round has three phases: the other tenant's reads alone (`quiet`), the
 * same reads while a plain undici download-to-file of the same number of files
 * of the same size runs in its own process with the same concurrency (`plain`:
 * the same bytes moved on the same 2 cores, by no gateway), and the same reads
 * while the gateway archives (`archive`); plain and archive alternate which goes first.
 */
export interface ArchiveSettings {
  tasks: number
  fileBytes: number
  /** ARCHIVE_CONCURRENCY of the gateway, and the plain download's */
  concurrency: number
  rounds: number
  /** the other tenant's reads: req/s over connections */
  readRate: number
  readConnections: number
  quietS: number
  /** archive (or download) runs first with this many tasks, inside the RSS window; 0: none */
  warmupTasks: number
  /** a phase that takes longer breaks the bench */
  timeoutS: number
}

export interface ArchivePhase {
  seconds: number
  bytes: number
  /** bytes / seconds, in MB/s (MB = 2^20 bytes) */
  mbPerS: number
  /** the other tenant's reads during the phase */
  reads: LoadResult
  /** the gateway's largest sampled RSS during the phase, MB */
  rssMaxMb: number | null
  /** CPU seconds the gateway used in the phase (the reads' share included) */
  gatewayCpuS: number | null
  /** CPU seconds the plain downloader used (plain phases) */
  downloaderCpuS: number | null
}

export interface ArchiveRound {
  first: 'plain' | 'archive'
  quiet: LoadResult
  plain: ArchivePhase
  archive: ArchivePhase
}

export interface ArchiveRecord {
  settings: ArchiveSettings
  rounds: ArchiveRound[]
  /** the gateway's RSS before its first archive (after the read warm-up), MB */
  rssStartMb: number | null
  /** its peak RSS at the end (VmHWM), MB */
  rssPeakMb: number | null
  /** peak − start, MB */
  rssGrowthMb: number | null
  /** the files checked on disk after each archive phase (size, one per task) */
  filesVerified: number
}

export interface ArchiveOptions {
  gateway: Started
  upstreamUrl: string
  /** the gateway's ARCHIVE_DIR */
  archiveDir: string
  tenantKey: string
  tenantId: string
  otherTenantKey: string
  otherTenantId: string
  gatewaySecret: string
  settings: ArchiveSettings
  warmupS: number
  downloaderScript: string
  say (line: string): void
}

const mb = 1024 * 1024
const round = (value: number, digits = 2): number => Math.round(value * 10 ** digits) / 10 ** digits

interface Downloader {
  child: ChildProcess
  lines: Interface
  run (job: { urls: string[], dir: string, concurrency: number }): Promise<{ bytes: number, files: number }>
  close (): Promise<void>
}

async function startDownloader (script: string, connections: number): Promise<Downloader> {
  const child = spawn(process.execPath, [script, String(connections)], { stdio: ['pipe', 'pipe', 'inherit'] })
  track(child)
  const lines = createInterface({ input: child.stdout! })
  const next = async (): Promise<Record<string, unknown>> => await new Promise((resolve, reject) => {
    const onClose = (): void => reject(new Error('the plain downloader exited'))
    child.once('close', onClose)
    lines.once('line', (line) => {
      child.off('close', onClose)
      resolve(JSON.parse(line) as Record<string, unknown>)
    })
  })
  await next()
  return {
    child,
    lines,
    async run (job) {
      const answer = next()
      child.stdin!.write(JSON.stringify(job) + '\n')
      const result = await answer
      if (typeof result.error === 'string') throw new Error(`plain download failed: ${result.error}`)
      return result as { bytes: number, files: number }
    },
    async close () {
      const closed = new Promise((resolve) => child.once('close', resolve))
      child.stdin!.end()
      await Promise.race([closed, sleep(3000)])
      child.kill('SIGKILL')
    }
  }
}

/** Resolves when `directory` holds `count` entries (an fs watch, and a slow poll in case an event is missed). */
async function entriesReach (directory: string, count: number, timeoutMs: number): Promise<void> {
  let watcher: FSWatcher | null = null
  let poll: NodeJS.Timeout | null = null
  let timer: NodeJS.Timeout | null = null
  try {
    await new Promise<void>((resolve, reject) => {
      let checking = false
      let again = false
      const check = (): void => {
        if (checking) {
          again = true
          return
        }
        checking = true
        readdir(directory).then((entries) => {
          checking = false
          if (entries.length >= count) resolve()
          else if (again) {
            again = false
            check()
          }
        }, (error: unknown) => {
          checking = false
          reject(error instanceof Error ? error : new Error(String(error)))
        })
      }
      watcher = watch(directory, check)
      poll = setInterval(check, 250)
      timer = setTimeout(() => reject(new Error(`archive: ${directory} did not reach ${count} entries within ${timeoutMs / 1000} s`)), timeoutMs)
      check()
    })
  } finally {
    (watcher as FSWatcher | null)?.close()
    if (poll !== null) clearInterval(poll)
    if (timer !== null) clearTimeout(timer)
  }
}

/** Samples the gateway's RSS every 100 ms until stopped; returns the largest. */
function sampleRss (pid: number): () => number | null {
  let max: number | null = null
  const take = (): void => {
    const memory = memoryMb(pid)
    if (memory !== null) max = Math.max(max ?? 0, memory.rss)
  }
  take()
  const timer = setInterval(take, 100)
  return () => {
    clearInterval(timer)
    take()
    return max
  }
}

async function taskRead (gatewayUrl: string, key: string, scopedId: string): Promise<{ status: number, body: { status?: string, archive?: { status?: string, error?: string } } }> {
  const answer = await fetch(`${gatewayUrl}/v1/tasks/${encodeURIComponent(scopedId)}`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(10_000) })
  return { status: answer.status, body: await answer.json() as { status?: string, archive?: { status?: string } } }
}

/** Reads each task until its archive says `archived` (or the timeout); throws with the first failure's reason. */
async function expectArchived (gatewayUrl: string, key: string, scopedIds: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (const id of scopedIds) {
    for (;;) {
      const { status, body } = await taskRead(gatewayUrl, key, id)
      if (status === 200 && body.archive?.status === 'archived') break
      if (status !== 200 || body.archive?.status === 'failed' || Date.now() > deadline) {
        throw new Error(`archive: task ${id} answered ${status}, archive ${JSON.stringify(body.archive ?? null)}`)
      }
      await sleep(100)
    }
  }
}

/** Runs `work` over `items` with at most `concurrency` at once. */
async function pool<T> (items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await work(items[next++] as T)
  }))
}

export async function runArchiveFigures (options: ArchiveOptions): Promise<ArchiveRecord> {
  const { gateway, settings } = options
  const ids = createTaskIdCodec({ secrets: [options.gatewaySecret] })
  const run = Date.now().toString(36)
  const tenantDir = join(options.archiveDir, options.tenantId)
  const downloads = await mkdtemp(join(tmpdir(), 'video-gateway-bench-download-'))
  const downloader = await startDownloader(options.downloaderScript, Math.max(16, settings.concurrency))
  let filesVerified = 0

  // The other tenant's task: finished and archived (a 1 MB video) before anything is measured,
  // so that each of its reads does what an archiving tenant's read does (signed links minted).
  const otherId = ids.scope(options.otherTenantId, `${archiveTaskPrefix}${mb}-other-${run}`)
  const first = await taskRead(gateway.url, options.otherTenantKey, otherId)
  if (first.status !== 200 || first.body.status !== 'completed') throw new Error(`archive: the other tenant's task read answered ${first.status} ${JSON.stringify(first.body)}`)
  await expectArchived(gateway.url, options.otherTenantKey, [otherId], settings.timeoutS * 1000)
  const reads = (durationS: number, until?: Promise<unknown>): Promise<LoadResult> => runSteadyLoad({
    url: `${gateway.url}/v1/tasks/${encodeURIComponent(otherId)}`,
    headers: { authorization: `Bearer ${options.otherTenantKey}` },
    connections: settings.readConnections,
    rate: settings.readRate,
    durationS,
    until
  })

  /** Downloads `tasks` files in the plain downloader; `ended` is called when the last file is closed. */
  async function plainPhase (tag: string, tasks: number, ended: () => void): Promise<{ seconds: number, bytes: number }> {
    const dir = await mkdtemp(join(downloads, `${tag}-`))
    const urls = Array.from({ length: tasks }, (_, index) => `${options.upstreamUrl}/files/${settings.fileBytes}/${tag}-${index}.mp4`)
    const started = performance.now()
    const result = await downloader.run({ urls, dir, concurrency: settings.concurrency })
    const seconds = (performance.now() - started) / 1000
    ended()
    await rm(dir, { recursive: true, force: true })
    if (result.bytes !== tasks * settings.fileBytes) throw new Error(`plain download: ${result.bytes} bytes, expected ${tasks * settings.fileBytes}`)
    return { seconds, bytes: result.bytes }
  }

  /**
   * Has the gateway archive `tasks` new tasks: from the first task read to the last
   * object in place (`ended` is called then); checked afterwards (records, sizes on disk).
   */
  async function archivePhase (tag: string, tasks: number, ended: () => void): Promise<{ seconds: number, bytes: number }> {
    await rm(tenantDir, { recursive: true, force: true })
    await mkdir(tenantDir, { recursive: true })
    const upstreamIds = Array.from({ length: tasks }, (_, index) => `${archiveTaskPrefix}${settings.fileBytes}-${run}-${tag}-${index}`)
    const scopedIds = upstreamIds.map((id) => ids.scope(options.tenantId, id))
    const started = performance.now()
    const archived = entriesReach(tenantDir, tasks, settings.timeoutS * 1000)
    archived.catch(() => {})
    // Each task is seen completed by one read of its tenant, which queues its archive job.
    await pool(scopedIds, 8, async (id) => {
      const { status, body } = await taskRead(gateway.url, options.tenantKey, id)
      if (status !== 200 || body.status !== 'completed') throw new Error(`archive: task read answered ${status} ${JSON.stringify(body)}`)
    })
    await archived
    const seconds = (performance.now() - started) / 1000
    ended()
    await expectArchived(gateway.url, options.tenantKey, scopedIds, settings.timeoutS * 1000)
    for (const id of upstreamIds) {
      const { size } = await stat(join(tenantDir, encodeURIComponent(id), '0.mp4'))
      if (size !== settings.fileBytes) throw new Error(`archive: ${id} stored ${size} bytes, expected ${settings.fileBytes}`)
      filesVerified++
    }
    await rm(tenantDir, { recursive: true, force: true })
    return { seconds, bytes: tasks * settings.fileBytes }
  }

  /** A phase with the other tenant's reads running until it ends, and the gateway's RSS sampled meanwhile. */
  async function measured (kind: 'plain' | 'archive', tag: string): Promise<ArchivePhase> {
    const stopSampling = sampleRss(gateway.pid)
    const cpu = (): [number | null, number | null] => [cpuTimeMs(gateway.pid), cpuTimeMs(downloader.child.pid!)]
    const cpuBefore = cpu()
    let cpuAfter: [number | null, number | null] | null = null
    let rssMaxMb: number | null = null
    let finish = (): void => {}
    const ended = new Promise<void>((resolve) => {
      finish = () => {
        cpuAfter ??= cpu()
        rssMaxMb ??= stopSampling()
        resolve()
      }
    })
    const cpuS = (index: 0 | 1): number | null => {
      const before = cpuBefore[index]
      const after = cpuAfter?.[index] ?? null
      return before === null || after === null ? null : round((after - before) / 1000, 2)
    }
    const readsRun = reads(settings.timeoutS, ended)
    try {
      const phase = await (kind === 'plain' ? plainPhase : archivePhase)(tag, settings.tasks, finish)
      return {
        seconds: round(phase.seconds, 3),
        bytes: phase.bytes,
        mbPerS: round(phase.bytes / mb / phase.seconds, 1),
        rssMaxMb,
        gatewayCpuS: cpuS(0),
        downloaderCpuS: kind === 'plain' ? cpuS(1) : null,
        reads: await readsRun
      }
    } finally {
      finish()
      await readsRun.catch(() => {})
    }
  }

  try {
    if (options.warmupS > 0) await reads(options.warmupS)
    const rssStart = memoryMb(gateway.pid)?.rss ?? null
    if (settings.warmupTasks > 0) {
      await plainPhase('warmup', settings.warmupTasks, () => {})
      await archivePhase('warmup', settings.warmupTasks, () => {})
    }
    const rounds: ArchiveRound[] = []
    for (let index = 0; index < settings.rounds; index++) {
      const order = index % 2 === 0 ? ['plain', 'archive'] as const : ['archive', 'plain'] as const
      const quiet = await reads(settings.quietS)
      options.say(`  archive      round ${index + 1}/${settings.rounds}  quiet    reads p50 ${quiet.p50.toFixed(2)} p99 ${quiet.p99.toFixed(2)} ms`)
      const phases: Partial<Record<'plain' | 'archive', ArchivePhase>> = {}
      for (const kind of order) {
        const phase = await measured(kind, `r${index}${kind[0]}`)
        phases[kind] = phase
        options.say(`  archive      round ${index + 1}/${settings.rounds}  ${kind.padEnd(8)} ${String(phase.mbPerS).padStart(7)} MB/s (${phase.seconds.toFixed(2)} s)  reads p50 ${phase.reads.p50.toFixed(2)} p99 ${phase.reads.p99.toFixed(2)} ms (${phase.reads.requests})  gateway RSS ≤ ${phase.rssMaxMb} MB  CPU s: gateway ${phase.gatewayCpuS}${kind === 'plain' ? `, downloader ${phase.downloaderCpuS}` : ''}`)
        await sleep(200)
      }
      rounds.push({ first: order[0], quiet, plain: phases.plain!, archive: phases.archive! })
    }
    const end = memoryMb(gateway.pid)
    return {
      settings,
      rounds,
      rssStartMb: rssStart,
      rssPeakMb: end?.peak ?? null,
      rssGrowthMb: rssStart === null || end === null ? null : round(end.peak - rssStart, 1),
      filesVerified
    }
  } finally {
    await downloader.close()
    await rm(downloads, { recursive: true, force: true })
  }
}

export interface Spread {
  median: number
  min: number
  max: number
}

function spread (values: number[]): Spread {
  return { median: round(median(values), 3), min: round(Math.min(...values), 3), max: round(Math.max(...values), 3) }
}

export interface ArchiveSummary {
  plainMbPerS: Spread
  archiveMbPerS: Spread
  /** median archive MB/s ÷ median plain MB/s (the figure), and the per-round ratios' spread */
  ratio: number
  roundRatios: Spread
  quietP99: Spread
  plainP99: Spread
  archiveP99: Spread
  /** median archive-phase p99 − median quiet p99, ms (the figure) */
  p99DeltaMs: number
  /** the same against the plain phase: what is left once the machine is as busy */
  p99DeltaVsPlainMs: number
}

export function archiveSummary (record: ArchiveRecord): ArchiveSummary {
  const { rounds } = record
  const plainMbPerS = spread(rounds.map((entry) => entry.plain.mbPerS))
  const archiveMbPerS = spread(rounds.map((entry) => entry.archive.mbPerS))
  const quietP99 = spread(rounds.map((entry) => entry.quiet.p99))
  const plainP99 = spread(rounds.map((entry) => entry.plain.reads.p99))
  const archiveP99 = spread(rounds.map((entry) => entry.archive.reads.p99))
  return {
    plainMbPerS,
    archiveMbPerS,
    ratio: round(archiveMbPerS.median / plainMbPerS.median, 3),
    roundRatios: spread(rounds.map((entry) => entry.archive.mbPerS / entry.plain.mbPerS)),
    quietP99,
    plainP99,
    archiveP99,
    p99DeltaMs: round(archiveP99.median - quietP99.median, 3),
    p99DeltaVsPlainMs: round(archiveP99.median - plainP99.median, 3)
  }
}

/** Every load run of the scenario, for the failed-request count. */
export function archiveReadRuns (record: ArchiveRecord): LoadResult[] {
  return record.rounds.flatMap((entry) => [entry.quiet, entry.plain.reads, entry.archive.reads])
}

export function archiveLines (record: ArchiveRecord): string[] {
  const { settings } = record
  const summary = archiveSummary(record)
  const show = (value: Spread, unit: string): string => `${value.median}${unit} (${value.min}–${value.max})`
  return [
    `- ${settings.tasks} tasks × ${round(settings.fileBytes / mb, 1)} MB, archived to the local directory with ARCHIVE_CONCURRENCY=${settings.concurrency}, ${settings.rounds} round(s), plain and archive alternating; medians (min–max of the rounds):`,
    `- archive throughput **${show(summary.archiveMbPerS, ' MB/s')}**; plain undici download-to-file of the same files, same concurrency, own process: ${show(summary.plainMbPerS, ' MB/s')}; **ratio ${summary.ratio}** (per round ${summary.roundRatios.min.toFixed(2)}–${summary.roundRatios.max.toFixed(2)}; target ≥ 0.8)`,
    `- gateway RSS: ${record.rssStartMb} MB before the first archive, peak ${record.rssPeakMb} MB (VmHWM): **growth ${record.rssGrowthMb} MB** (target ≤ 64); largest sample per phase: plain ${Math.max(...record.rounds.map((entry) => entry.plain.rssMaxMb ?? 0))} MB, archive ${Math.max(...record.rounds.map((entry) => entry.archive.rssMaxMb ?? 0))} MB`,
    `- the other tenant's task reads, ${settings.readRate} req/s evenly spaced (up to ${settings.readConnections} connections): p99 quiet ${show(summary.quietP99, ' ms')}, during the plain download ${show(summary.plainP99, ' ms')}, while the gateway archives ${show(summary.archiveP99, ' ms')}: **+${summary.p99DeltaMs} ms** over quiet (target ≤ 2), ${summary.p99DeltaVsPlainMs >= 0 ? '+' : ''}${summary.p99DeltaVsPlainMs} ms over the plain download's`,
    `- ${record.filesVerified} archived files checked on disk (size), every task's read saying \`archived\``
  ]
}
