import { ConfigError } from '../config.ts'

// One style for every start-up failure: a single human line on stderr (plus the JSON fatal
// line for log collectors); a user's mistake gets no stack trace.

export interface StartupFailure { line: string, userMistake: boolean }

export function describeStartupFailure (error: unknown, settings: { port: number, host: string }): StartupFailure {
  const code = (error as NodeJS.ErrnoException | null)?.code
  if (code === 'EADDRINUSE') return { line: `port ${settings.port} is in use: set PORT`, userMistake: true }
  if (code === 'EADDRNOTAVAIL') return { line: `address ${settings.host} is not on this machine: set HOST`, userMistake: true }
  if (code === 'EACCES' && (error as { syscall?: string }).syscall === 'listen') return { line: `port ${settings.port} needs privileges: set PORT above 1023`, userMistake: true }
  if (error instanceof ConfigError) return { line: error.message, userMistake: true }
  return { line: error instanceof Error ? error.message : String(error), userMistake: false }
}
