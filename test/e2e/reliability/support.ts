import { Worker } from 'node:worker_threads'
import { spawnSync, type ChildProcess } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { errorTable, type ErrorCode } from '../../../src/errors/table.ts'
import { ConfigSchema, type Config } from '../../../src/config.ts'
import { freePort, startServerProcess } from '../../helpers/server-process.ts'

export { freePort }

/**
 * Shared by the reliability tests (not a test file itself: .taprc only runs
 * *.test.ts). Everything here is loopback-only and bounded in count and time.
 */

/** TCP handles this process holds (sockets and listening servers), from process.getActiveResourcesInfo(). */
export function tcpHandles (): { sockets: number, servers: number, total: number } {
  let sockets = 0
  let servers = 0
  for (const resource of process.getActiveResourcesInfo()) {
    if (resource === 'TCPSocketWrap') sockets += 1
    else if (resource === 'TCPServerWrap') servers += 1
  }
  return { sockets, servers, total: sockets + servers }
}

/** Polls `check` every `intervalMs` until it returns true or `timeoutMs` passes; returns the last result. */
export async function waitUntil (check: () => boolean, timeoutMs: number, intervalMs = 25): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (check()) return true
    await sleep(intervalMs)
  }
  return check()
}

/** Nearest-rank percentile (p in 0..100) of a list of numbers; NaN for an empty list. */
export function percentile (values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1] as number
}

export const ms = (value: number): string => `${Math.round(value)} ms`
export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/** Deterministic PRNG (mulberry32), so that a failing mix can be replayed. */
export function seededRandom (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let x = state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export function shuffle<T> (items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const swap = items[i] as T
    items[i] = items[j] as T
    items[j] = swap
  }
  return items
}

export interface Answer {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: string
  ms: number
}

function messagePattern (template: string): RegExp {
  const escaped = template.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp('^' + escaped.replace(/%s/g, '.+').replace(/%d/g, '\\d+') + '$', 's')
}

/**
 * Problems with an error answer against its row of the error table (status,
 * type, message template, the one format: exactly `{error:{code,message,type,
 * request_id,param?}}`, request_id = x-request-id). Empty when it is right.
 * Returns problems instead of asserting, so that hundreds of answers make one
 * assertion each, not ten.
 */
export function errorAnswerProblems (answer: Answer, code: ErrorCode, publicCode: string = code): string[] {
  const row = errorTable[code]
  const problems: string[] = []
  if (answer.statusCode !== row.statusCode) problems.push(`status ${answer.statusCode}, wanted ${row.statusCode}`)
  if (!/^application\/json/.test(String(answer.headers['content-type']))) problems.push(`content-type ${String(answer.headers['content-type'])}`)
  let body: unknown
  try {
    body = JSON.parse(answer.body)
  } catch {
    return [...problems, `body is not JSON: ${answer.body.slice(0, 120)}`]
  }
  const error = (body as { error?: Record<string, unknown> }).error
  if (typeof body !== 'object' || body === null || Object.keys(body).join() !== 'error' || typeof error !== 'object' || error === null) {
    return [...problems, `not the one error format: ${answer.body.slice(0, 120)}`]
  }
  const keys = Object.keys(error).sort().join()
  if (keys !== 'code,message,request_id,type' && keys !== 'code,message,param,request_id,type') problems.push(`error fields ${keys}`)
  if (error.code !== publicCode) problems.push(`code ${String(error.code)}, wanted ${publicCode}`)
  if (error.type !== row.type) problems.push(`type ${String(error.type)}, wanted ${row.type}`)
  if (typeof error.message !== 'string' || !messagePattern(row.message).test(error.message)) problems.push(`message ${String(error.message)} does not fit "${row.message}"`)
  if (typeof error.request_id !== 'string' || error.request_id !== answer.headers['x-request-id']) problems.push('request_id is not the x-request-id header')
  return problems
}

/** The code of an error answer, or `ok` for a 2xx, or `unparsable`. */
export function outcomeOf (answer: Answer): string {
  if (answer.statusCode >= 200 && answer.statusCode < 300) return 'ok'
  try {
    const code = (JSON.parse(answer.body) as { error?: { code?: unknown } }).error?.code
    return typeof code === 'string' ? code : 'unparsable'
  } catch {
    return 'unparsable'
  }
}

export function countBy<T> (items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const item of items) {
    const k = key(item)
    counts[k] = (counts[k] ?? 0) + 1
  }
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)))
}

/**
 * An upstream address whose TCP connect stays pending: a socket listening on
 * 127.0.0.1 with backlog 1 whose owner never calls accept(). Node accepts from
 * its event loop, so the listener lives in a worker thread that blocks in
 * Atomics.wait right after listen (no CPU spent). Linux completes the handshake
 * for backlog+1 connections into the accept queue; once that queue is full, it
 * drops further SYNs (tcp_abort_on_overflow=0), so a new connect() gets no
 * SYN-ACK and waits: exactly what an upstream that black-holes connections
 * looks like, over loopback. `fillers` are the test's own sockets that fill the
 * queue first; the function checks that one more connect really stays pending.
 */
export async function startBlackhole (): Promise<{ url: string, port: number, pendingConnectVerified: boolean, close (): Promise<void> }> {
  const wake = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(`
    const { workerData, parentPort } = require('node:worker_threads')
    const server = require('node:net').createServer()
    server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
      parentPort.postMessage(server.address().port)
      Atomics.wait(workerData, 0, 0) // blocks this thread's event loop: nothing is ever accepted
      server.close()
      parentPort.close()
    })
  `, { eval: true, workerData: wake })
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })

  // Fill the accept queue (backlog + 1 connections complete), then check that one more stays pending.
  const fillers: Socket[] = []
  let pendingConnectVerified = false
  for (let i = 0; i < 8 && !pendingConnectVerified; i++) {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    fillers.push(socket)
    const connected = await Promise.race([
      new Promise<boolean>((resolve) => socket.once('connect', () => resolve(true))),
      sleep(300).then(() => false)
    ])
    if (!connected) pendingConnectVerified = true
  }
  for (const socket of fillers.filter((s) => s.connecting)) socket.destroy()

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pendingConnectVerified,
    async close () {
      for (const socket of fillers) socket.destroy()
      Atomics.store(wake, 0, 1)
      Atomics.notify(wake, 0)
      await exited
    }
  }
}

export interface GatewayProcess {
  child: ChildProcess
  port: number
  url: string
  output (): string
  waitFor (pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
}

/**
 * The real server (`node src/server.ts`) in its own process, as a user runs it:
 * its own env, in `cwd` (a testdir without .env). Resolves once it listens. Killed
 * (SIGKILL, by this child's pid only) at teardown; its output goes to the key-leak scan.
 */
export async function startGatewayProcess (t: Test, cwd: string, env: Record<string, string>): Promise<GatewayProcess> {
  const port = await freePort()
  const server = startServerProcess(t, { HOST: '127.0.0.1', PORT: String(port), ...env }, {}, { cwd })
  await server.waitFor(/Server listening at/)
  return { child: server.child, port, url: `http://127.0.0.1:${port}`, output: server.output, waitFor: server.waitFor }
}

/** This process's open-file limit (`ulimit -n`), or 1024 if it cannot be read. */
export function openFileLimit (): number {
  const result = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' })
  const value = Number(result.stdout.trim())
  return Number.isFinite(value) && value > 0 ? value : 1024
}

/**
 * Gateway settings for tests where every request must meet its own upstream
 * fault: the circuit breaker off (open, it answers 503 without an upstream
 * call) and one attempt per call (a retry would take a second fault). Only the
 * settings this version of the gateway has (config.ts names them).
 */
export function oneUpstreamCallPerRequest (): Partial<Config> {
  const known = ConfigSchema.properties as Record<string, unknown>
  const settings: Record<string, number> = {}
  if ('upstreamBreakerFailures' in known) settings.upstreamBreakerFailures = 0
  if ('upstreamRetryAttempts' in known) settings.upstreamRetryAttempts = 1
  return settings as Partial<Config>
}
