import t from 'tap'
import { Redis } from 'ioredis'
import { randomUUID } from 'node:crypto'
import { defineScript } from '../../src/lib/redis-script.ts'
import { redisForTests } from '../helpers/redis.ts'

t.test('a defined script runs by SHA, defines once per client, and survives a script cache flush', async (t) => {
  const available = await redisForTests()
  if ('skip' in available) { t.comment(available.skip); return }
  const redis = new Redis(available.url)
  const monitor = new Redis(available.url)
  t.teardown(async () => { await redis.quit(); await monitor.quit() })
  const key = `vg:test:script:${randomUUID()}`
  t.teardown(() => redis.del(key))
  const lua = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
  const incrementBy = defineScript(redis, { name: 'vgTestIncrementBy', lua, numberOfKeys: 1 })
  const again = defineScript(redis, { name: 'vgTestIncrementBy', lua, numberOfKeys: 1 })

  const sent: string[] = []
  const watcher = await monitor.monitor()
  watcher.on('monitor', (_time: string, args: string[]) => {
    const command = args[0]!.toLowerCase()
    if (args.includes(key) && command.startsWith('eval')) sent.push(command)
  })
  t.teardown(() => watcher.disconnect())
  t.equal(await incrementBy(key, 2), 2)
  t.equal(await again(key, 3), 5, 'the same command, defined once')
  await redis.script('FLUSH')
  t.equal(await incrementBy(key, 1), 6, 'reloaded after NOSCRIPT (a Redis restart loses its scripts)')
  await new Promise((resolve) => setTimeout(resolve, 50))
  // After the flush: the SHA is refused (NOSCRIPT), the text goes once more.
  t.same(sent, ['eval', 'evalsha', 'evalsha', 'eval'], 'the text once, then the SHA only')
})
