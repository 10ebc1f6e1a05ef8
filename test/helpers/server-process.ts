import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { captureForLeakScan } from './leak-capture.ts'
import { testGatewaySecret } from './gateway.ts'
import { TEST_UPSTREAM_KEY } from './simulator.ts'
import type { TenantDefinition } from '../../src/schemas/tenants.ts'

const serverPath = fileURLToPath(new URL('../../src/server.ts', import.meta.url))

/** Where the kernel's ephemeral range starts (the ports it hands to `listen(0)` and to outgoing connections). */
function ephemeralPortsStart (): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    if (Number.isInteger(low)) return low
  } catch {}
  return 32768 // Linux's default
}

/** Free right now: nothing listens on it (the probe binds it and lets it go). */
async function isFree (port: number): Promise<boolean> {
  const server = createServer()
  return await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** Ports this helper picks from: below the ephemeral range, above the usual services (Redis's 6379...). */
const pickedPorts = { low: 20_000, high: Math.min(ephemeralPortsStart(), 65_536) }

/**
 * A loopback port for a process that must be told its port before it starts
 * (a server child, a redis-server, a gateway whose PUBLIC_BASE_URL names it).
 * Not one of the kernel's ephemeral ports: a port `listen(0)` found and released
 * can be handed to any other socket of the suite (its files run in parallel and
 * open thousands) before the child binds it, and the child then fails with
 * EADDRINUSE (measured: a released port came back within 100 `listen(0)` calls in
 * 3 trials of 300). Below the range, only this helper picks ports, at random.
 */
export async function freePort (): Promise<number> {
  const span = pickedPorts.high - pickedPorts.low
  for (let attempt = 0; attempt < (span > 0 ? 50 : 0); attempt++) {
    const port = pickedPorts.low + Math.floor(Math.random() * span)
    if (await isFree(port)) return port
  }
  // No room below the ephemeral range on this machine: the kernel's choice.
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export interface ServerProcess {
  child: ChildProcess
  exited: Promise<number | null>
  output (): string
  waitFor (pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
}

/**
 * `npm start` as a user runs it: a real process, its own env, in a directory
 * of its own (no .env) holding `files` (a tenants file, say: name it relatively),
 * or in `options.cwd` when the caller prepared one.
 */
export function startServerProcess (t: Test, env: Record<string, string>, files: Record<string, string> = {}, options: { cwd?: string, stdout?: 'read' | 'unread' } = {}): ServerProcess {
  const cwd = options.cwd ?? t.testdir(files)
  const child = spawn(process.execPath, [serverPath], {
    cwd,
    env: { PATH: process.env.PATH ?? '', NODE_V8_COVERAGE: process.env.NODE_V8_COVERAGE ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  // 'unread': a reader that never reads (the pipe fills up and stays full); output() then has stderr only.
  if (options.stdout !== 'unread') child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  t.teardown(() => {
    captureForLeakScan('process-output', output)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return {
    child,
    exited,
    output: () => output,
    async waitFor (pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        const match = output.match(pattern)
        if (match !== null) return match
        if (child.exitCode !== null) break
        await sleep(25)
      }
      throw new Error(`no ${pattern} in output:\n${output}`)
    }
  }
}

/**
 * A gateway process on a real upstream (a test simulator, say), with `tenants`
 * in a tenants file of its own, on a free loopback port; resolved once it listens.
 */
export async function startGatewayProcess (t: Test, options: { upstreamUrl: string, tenants: readonly TenantDefinition[], env?: Record<string, string> }): Promise<{ server: ServerProcess, port: number, base: string }> {
  const port = await freePort()
  const server = startServerProcess(t, {
    PORT: String(port),
    HOST: '127.0.0.1',
    EVOLINK_API_KEY: TEST_UPSTREAM_KEY,
    EVOLINK_BASE_URL: options.upstreamUrl,
    TENANTS_FILE: 'tenants.json',
    GATEWAY_SECRET: testGatewaySecret,
    LOG_LEVEL: 'info',
    ...options.env
  }, { 'tenants.json': JSON.stringify({ tenants: options.tenants }) })
  await server.waitFor(/Server listening/)
  return { server, port, base: `http://127.0.0.1:${port}` }
}
