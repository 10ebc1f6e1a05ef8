// `npm run simulator`: the upstream simulator on its own. Nothing here runs on import.
import { startSimulator, type StartedSimulator } from './start.ts'

function intFromEnv (env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`)
  return value
}

/** Starts the simulator from environment variables; close() also drops the signal handlers. */
export async function main (env: NodeJS.ProcessEnv = process.env): Promise<StartedSimulator> {
  const started = await startSimulator({
    host: env.SIMULATOR_HOST || '127.0.0.1',
    port: intFromEnv(env, 'SIMULATOR_PORT', 4010),
    apiKey: env.SIMULATOR_API_KEY || 'sk-evo-simulator',
    taskDurationMs: intFromEnv(env, 'SIMULATOR_TASK_DURATION_MS', 20000),
    // A gateway on this machine or a private network is called back only when asked for (the upstream refuses it).
    allowPrivateCallbackUrls: env.SIMULATOR_ALLOW_PRIVATE_CALLBACK_URLS === '1' || env.SIMULATOR_ALLOW_PRIVATE_CALLBACK_URLS === 'true',
    logger: { level: env.LOG_LEVEL || 'info' }
  })
  const log = started.simulator.app.log
  log.info({ url: started.url, defaultKey: started.apiKey === 'sk-evo-simulator' }, `Evolink simulator ready at ${started.url}: POST /v1/videos/generations, GET /v1/tasks/:task_id, /_simulator/{faults,stats,reset}`)
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'closing')
    close().then(() => {
      log.info('closed')
      process.exitCode = 0
    }, (error: unknown) => {
      log.error({ err: error }, 'close failed')
      process.exitCode = 1
    })
  }
  const close = async (): Promise<void> => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await started.close()
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return { ...started, close }
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
