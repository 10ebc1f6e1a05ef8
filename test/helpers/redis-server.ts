import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import type { HasTeardown } from './gateway.ts'
import { freePort } from './server-process.ts'

/**
 * A throw-away redis-server of the test's own, on a spare loopback port, with
 * no persistence, that the test can kill and start again (outage tests; the
 * shared Redis of redisForTests must never be taken down). Without the
 * redis-server binary the tests skip loudly, unless REQUIRE_REDIS=1.
 */
export interface OwnRedis {
  url: string
  /** starts it (again, on the same port) and waits until it answers */
  start (): Promise<void>
  /** kills it at once (SIGKILL: a crash, not a clean shutdown) and waits until it is gone */
  kill (): Promise<void>
}

export async function ownRedisServer (t: HasTeardown): Promise<OwnRedis | { skip: string }> {
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    const message = 'redis-server NOT FOUND on PATH: the Redis outage tests are SKIPPED. Install Redis.'
    if (process.env.REQUIRE_REDIS === '1') throw new Error(`${message} REQUIRE_REDIS=1 makes this a failure.`)
    process.stderr.write(`\n!!!!!!!! ${message}\n\n`)
    return { skip: message }
  }
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | null = null

  async function kill (): Promise<void> {
    const running = child
    child = null
    if (running === null || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGKILL')
    await exited
  }

  async function start (): Promise<void> {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
    probe.on('error', () => {})
    try {
      for (let i = 0; i < 100; i++) {
        try {
          await probe.connect()
          await probe.ping()
          return
        } catch {
          probe.disconnect()
          await sleep(50)
        }
      }
      throw new Error(`redis-server on port ${port} did not start`)
    } finally {
      probe.disconnect()
    }
  }

  t.teardown(kill)
  await start()
  return { url, start, kill }
}
