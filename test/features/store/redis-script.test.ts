import t from 'tap'
import { Redis, type Command } from 'ioredis'
import { randomUUID } from 'node:crypto'
import { defineScript } from '../../../src/features/store/redis-script.ts'
import { redisForTests } from '../../helpers/redis.ts'

t.test('a defined script runs by SHA, defines once per client, and survives a script cache flush', async (t) => {
  const available = await redisForTests()
  if ('skip' in available) { t.comment(available.skip); return }
  const redis = new Redis(available.url)
  t.teardown(async () => { await redis.quit() })
  const key = `vg:test:script:${randomUUID()}`
  t.teardown(() => redis.del(key))
  const lua = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
  const incrementBy = defineScript(redis, { name: 'vgTestIncrementBy', lua, numberOfKeys: 1 })
  const again = defineScript(redis, { name: 'vgTestIncrementBy', lua, numberOfKeys: 1 })

  // What the client wrote to the socket. ioredis picks EVAL or EVALSHA as it
  // writes a script command (by whether that socket has sent the text yet), so
  // each command's name is read once it has been answered. Redis's MONITOR would
  // show the same from the server side, but ioredis's monitor mode races with
  // other clients' traffic (a monitor line in the same packet as MONITOR's
  // "+OK" is taken for a reply: "Command queue state error"), and the suite's
  // other files use this Redis at the same time.
  // A Set: a command sent before the connection is up is queued and handed over again.
  const scriptCommands = new Set<Command>()
  const sendCommand = redis.sendCommand.bind(redis)
  redis.sendCommand = (command: Command, ...rest) => {
    if (command.args.map(String).includes(key)) scriptCommands.add(command)
    return sendCommand(command, ...rest)
  }
  t.equal(await incrementBy(key, 2), 2)
  t.equal(await again(key, 3), 5, 'the same command, defined once')
  await redis.script('FLUSH')
  t.equal(await incrementBy(key, 1), 6, 'reloaded after NOSCRIPT (a Redis restart loses its scripts)')
  // After the flush: the SHA is refused (NOSCRIPT), the text goes once more.
  t.same([...scriptCommands].map((command) => command.name), ['eval', 'evalsha', 'evalsha', 'eval'], 'the text once, then the SHA only')
})
