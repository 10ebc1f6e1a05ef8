import type { ChainableCommander, Redis } from 'ioredis'

export type RedisScriptArgument = string | number

/** A Lua script bound to one client: `run(...keys, ...args)`; `run.queue(pipeline, ...keys, ...args)` adds it to a pipeline instead. */
export type RedisScript = ((...keysAndArgs: RedisScriptArgument[]) => Promise<unknown>) & {
  queue (pipeline: ChainableCommander, ...keysAndArgs: RedisScriptArgument[]): void
}

/**
 * A Lua script run by its SHA (EVALSHA), loaded once and reloaded by ioredis
 * itself after a NOSCRIPT (a Redis restart): `defineCommand` does it. Plain
 * EVAL sends the whole script text with every call, which cost the gateway
 * more CPU per create than everything else it does with Redis together.
 */
export function defineScript (redis: Redis, options: { name: string, lua: string, numberOfKeys: number }): RedisScript {
  const commands = redis as unknown as Record<string, RedisScript | undefined>
  // One client is shared by every store of an app: define each script once on it.
  if (commands[options.name] === undefined) redis.defineCommand(options.name, { lua: options.lua, numberOfKeys: options.numberOfKeys })
  const command = commands[options.name] as (...keysAndArgs: RedisScriptArgument[]) => Promise<unknown>
  const run = async (...keysAndArgs: RedisScriptArgument[]): Promise<unknown> => await command.apply(redis, keysAndArgs)
  return Object.assign(run, {
    queue (pipeline: ChainableCommander, ...keysAndArgs: RedisScriptArgument[]): void {
      // A pipeline of this client has every command the client defined.
      const queued = (pipeline as unknown as Record<string, unknown>)[options.name] as (...keysAndArgs: RedisScriptArgument[]) => unknown
      queued.apply(pipeline, keysAndArgs)
    }
  })
}

/**
 * Deletes KEYS[1] only while it still holds ARGV[1] (a claim's own random token),
 * so a holder whose lease expired can never delete a newer holder's claim.
 * Shared by every store that claims with SET NX PX.
 */
export const compareAndDeleteLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`
