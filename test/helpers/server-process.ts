import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { captureForLeakScan } from './leak-capture.ts'

const serverPath = fileURLToPath(new URL('../../src/server.ts', import.meta.url))

export async function freePort (): Promise<number> {
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
export function startServerProcess (t: Test, env: Record<string, string>, files: Record<string, string> = {}, options: { cwd?: string } = {}): ServerProcess {
  const cwd = options.cwd ?? t.testdir(files)
  const child = spawn(process.execPath, [serverPath], {
    cwd,
    env: { PATH: process.env.PATH ?? '', NODE_V8_COVERAGE: process.env.NODE_V8_COVERAGE ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
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
