import { distance as editDistance } from 'fastest-levenshtein'
import { describeConfig } from '../config.ts'

/** Levenshtein distance (fastest-levenshtein), exported for its tests. */
export { editDistance }

// Typos in settings are otherwise silent (LOG_LEVL=debug is simply not read): at start, the
// gateway warns once per variable that looks like one of its own but is not, and never fails.

export interface UnknownSetting { name: string, suggestion: string | null }

/**
 * Variables close to a known name (edit distance ≤ 2; ≤ 1 for names of 5 letters or fewer, so
 * that HOME is not taken for HOST), or with a known name's prefix (LOG_, REDIS_, WEBHOOK_, …)
 * and an unknown rest. Known names come from the config schema.
 */
export function findUnknownSettings (env: Record<string, string | undefined>, known: string[] = describeConfig().map(entry => entry.env)): UnknownSetting[] {
  const knownNames = new Set(known)
  const prefixes = new Set(known.filter(name => name.includes('_')).map(name => `${name.split('_')[0]}_`))
  const found: UnknownSetting[] = []
  for (const name of Object.keys(env).sort()) {
    if (knownNames.has(name)) continue
    let suggestion: string | null = null
    let best = Infinity
    for (const candidate of known) {
      const distance = editDistance(name, candidate)
      const allowed = Math.min(name.length, candidate.length) <= 5 ? 1 : 2
      if (distance <= allowed && distance < best) { best = distance; suggestion = candidate }
    }
    // OTEL_*: the OpenTelemetry exporter reads many standard variables of its own (OTEL_EXPORTER_OTLP_HEADERS…).
    const prefixed = !name.startsWith('OTEL_') && [...prefixes].some(prefix => name.startsWith(prefix))
    if (suggestion !== null || prefixed) found.push({ name, suggestion })
  }
  return found
}

export function unknownSettingMessage ({ name, suggestion }: UnknownSetting): string {
  return suggestion === null ? `unknown setting ${name}: not a video-gateway variable (see .env.example)` : `unknown setting ${name}: did you mean ${suggestion}?`
}
