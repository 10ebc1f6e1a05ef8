import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Child processes of the bench: start them, know when they are ready, and
 * make sure none outlives the bench (normal end, error, Ctrl-C, SIGTERM).
 */
export interface Started {
  name: string
  child: ChildProcess
  pid: number
  /** http://127.0.0.1:<port> */
  url: string
}

const running = new Set<ChildProcess>()

/** A child the bench started itself: it is killed with the others if the bench ends early. */
export function track (child: ChildProcess): void {
  running.add(child)
  child.once('exit', () => running.delete(child))
}

/** Synchronous on purpose: also runs from process.on('exit'). */
export function killAllNow (): void {
  for (const child of running) child.kill('SIGKILL')
}

export function installCleanup (): void {
  process.once('exit', killAllNow)
  const signals = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const
  for (const [signal, code] of Object.entries(signals)) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping ${running.size} child process(es)\n`)
      killAllNow()
      process.exit(code)
    })
  }
}

/** A port that was free a moment ago (for the gateway, which takes PORT from its env). */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** Last few KB of a stream, for error messages. */
function tail (stream: NodeJS.ReadableStream | null): () => string {
  let text = ''
  stream?.on('data', (chunk: Buffer) => { text = (text + chunk.toString()).slice(-4096) })
  return () => text.trim()
}

function exited (child: ChildProcess): Promise<string> {
  return new Promise((resolve) => child.once('close', (code, signal) => resolve(`exited (${signal ?? `code ${code}`})`)))
}

/** Starts one of the bench's own servers (see child-protocol.ts) and waits for its port. */
export async function startOwnServer (name: string, script: string, args: string[], nodeFlags: string[] = []): Promise<Started> {
  const child = spawn(process.execPath, [...nodeFlags, script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  track(child)
  const stderr = tail(child.stderr)
  const lines = createInterface({ input: child.stdout! })
  const port = await new Promise<number>((resolve, reject) => {
    const fail = (why: string): void => {
      done()
      reject(new Error(`${name} ${why}:\n${stderr()}`))
    }
    const onClose = (code: number | null, signal: string | null): void => fail(`exited (${signal ?? `code ${code}`}) before listening`)
    const timer = setTimeout(() => fail('gave no port within 15 s'), 15_000)
    const done = (): void => {
      clearTimeout(timer)
      child.off('close', onClose)
    }
    child.once('close', onClose)
    lines.once('line', (line) => {
      done()
      resolve((JSON.parse(line) as { port: number }).port)
    })
  })
  return { name, child, pid: child.pid!, url: `http://127.0.0.1:${port}` }
}

export interface GatewayStart {
  name: string
  /** e.g. --cpu-prof; the gateway is `node <nodeFlags> dist/server.js` */
  nodeFlags?: string[]
  env: Record<string, string>
  /** where its stdout (the access log) goes; default /dev/null */
  logFile?: string
  cwd: string
  serverJs: string
}

async function ready (url: string, child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    try {
      const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) })
      await response.arrayBuffer()
      if (response.ok) return true
    } catch {}
    await sleep(100)
  }
  return false
}

function spawnGateway (options: GatewayStart, port: number, stdout: number | 'pipe'): ChildProcess {
  // Only what the bench sets: no NODE_OPTIONS or gateway variables from the caller's shell,
  // and a temporary cwd, so that no .env file is read.
  const env = { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), ...options.env }
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), options.serverJs], {
    cwd: options.cwd, env, stdio: ['ignore', stdout, 'pipe']
  })
  track(child)
  return child
}

/** The production gateway, started as users start it, with its access log sent to /dev/null (or a file). */
export async function startGateway (options: GatewayStart): Promise<Started> {
  const port = await freePort()
  const logFd = openSync(options.logFile ?? '/dev/null', 'a')
  const child = spawnGateway(options, port, logFd)
  closeSync(logFd)
  const stderr = tail(child.stderr)
  const url = `http://127.0.0.1:${port}`
  if (await ready(url, child, 20_000)) return { name: options.name, child, pid: child.pid!, url }
  child.kill('SIGKILL')
  // Its log went to /dev/null: start it once more with stdout captured, to say why it failed.
  const probe = spawnGateway(options, await freePort(), 'pipe')
  const output = tail(probe.stdout)
  await Promise.race([exited(probe), sleep(5000)])
  probe.kill('SIGKILL')
  throw new Error(`${options.name} did not become ready:\n${stderr()}\n${output()}`)
}

/** SIGTERM (graceful close, which also writes a --cpu-prof profile), SIGKILL after a while. */
export async function stop (started: Started, timeoutMs = 10_000): Promise<void> {
  const { child } = started
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = exited(child)
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  await done
  clearTimeout(timer)
}

/** Resident set size in MB (VmRSS from /proc/<pid>/status; Linux only). */
export function rssMb (pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match === null ? null : Math.round(Number(match[1]) / 1024 * 10) / 10
  } catch {
    return null
  }
}

/**
 * Resident set size now and its peak so far (VmHWM: the kernel's high-water mark,
 * which also catches a peak between two samples), in MB; Linux only.
 */
export function memoryMb (pid: number): { rss: number, peak: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
    const peak = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)
    if (rss === null || peak === null) return null
    const mb = (kB: string): number => Math.round(Number(kB) / 1024 * 10) / 10
    return { rss: mb(rss[1]!), peak: mb(peak[1]!) }
  } catch {
    return null
  }
}

/** CPU time (user + system, all threads) a process has used so far, in ms; null if unreadable. */
export function cpuTimeMs (pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15, in clock ticks.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 1000 / clockTicksPerSecond
  } catch {
    return null
  }
}

/** USER_HZ: 100 on every mainstream Linux build (it is part of the kernel ABI). */
const clockTicksPerSecond = 100
