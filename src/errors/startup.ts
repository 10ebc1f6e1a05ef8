import { ConfigError } from '../config.ts'
import { TenantsFileError } from '../features/tenants/registry.ts'

// One style for every start-up failure: a single human line on stderr (plus the JSON fatal
// line for log collectors); a user's mistake gets no stack trace.

export interface StartupFailure {
  line: string
  userMistake: boolean
  /** the system error code behind it (EADDRINUSE, ECONNREFUSED...), for the JSON line */
  code?: string
}

/**
 * Something the gateway needs at start-up cannot be reached (Redis): the
 * message names the variable to check; no stack, since the fix is outside the code.
 */
export class DependencyUnreachableError extends Error {
  override name = 'DependencyUnreachableError'
}

/** What the person starting the gateway must fix: their own settings, files and surroundings. */
function isUserMistake (error: unknown): error is Error {
  return error instanceof ConfigError || error instanceof TenantsFileError || error instanceof DependencyUnreachableError
}

export function describeStartupFailure (error: unknown, settings: { port: number, host: string, metricsPort?: number }): StartupFailure {
  const code = (error as NodeJS.ErrnoException | null)?.code
  // Listen errors carry the port they tried: the main listener's (PORT) or the metrics listener's (METRICS_PORT).
  const triedPort = (error as { port?: unknown } | null)?.port
  const metrics = settings.metricsPort !== undefined && settings.metricsPort !== 0 && triedPort === settings.metricsPort
  const port = metrics ? settings.metricsPort : settings.port
  const variable = metrics ? 'METRICS_PORT' : 'PORT'
  if (code === 'EADDRINUSE') return { line: `port ${port} is in use: set ${variable}`, userMistake: true, code }
  if (code === 'EADDRNOTAVAIL') return { line: `address ${settings.host} is not on this machine: set HOST`, userMistake: true, code }
  if (code === 'EACCES' && (error as { syscall?: string }).syscall === 'listen') return { line: `port ${port} needs privileges: set ${variable} above 1023`, userMistake: true, code }
  if (isUserMistake(error)) {
    const causeCode = (error.cause as NodeJS.ErrnoException | undefined)?.code
    return { line: error.message, userMistake: true, ...(typeof causeCode === 'string' ? { code: causeCode } : {}) }
  }
  return { line: error instanceof Error ? error.message : String(error), userMistake: false }
}
