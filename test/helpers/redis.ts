import { Redis } from 'ioredis'

/**
 * The real Redis for shared-store tests: REDIS_URL, or 127.0.0.1:6379 if it
 * answers. Without one the tests skip LOUDLY, unless REQUIRE_REDIS=1 (set by
 * .ci/run), which turns a missing Redis into a failure.
 */
export async function redisForTests (): Promise<{ url: string } | { skip: string }> {
  const url = process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '' ? process.env.REDIS_URL : 'redis://127.0.0.1:6379'
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
  probe.on('error', () => {})
  try {
    await probe.connect()
    await probe.ping()
    return { url }
  } catch (error) {
    const message = `REDIS NOT AVAILABLE at ${url} (${(error as Error).message}): the shared-store tests are SKIPPED. Start Redis or set REDIS_URL.`
    if (process.env.REQUIRE_REDIS === '1') throw new Error(`${message} REQUIRE_REDIS=1 makes this a failure.`)
    process.stderr.write(`\n!!!!!!!! ${message}\n\n`)
    return { skip: message }
  } finally {
    probe.disconnect()
  }
}
