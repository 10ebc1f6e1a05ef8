// `npm audit` of the production dependencies for CI: fails on a high or critical advisory;
// an unreachable audit endpoint is a loud warning (nothing was checked), not a failure.
import { spawnSync } from 'node:child_process'

const audit = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
let report: { metadata?: { vulnerabilities?: Record<string, number> }, message?: string, error?: { summary?: string } } | undefined
try { report = JSON.parse(audit.stdout) } catch { report = undefined }
const counts = report?.metadata?.vulnerabilities
if (counts === undefined) {
  const why = (report?.message ?? report?.error?.summary ?? 'no JSON from npm audit').replace(/\s+/g, ' ')
  process.stdout.write(`\n!!!!!!!! npm audit could NOT check the dependencies (${why}; exit status ${String(audit.status)}): run \`npm audit --omit=dev --audit-level=high\` where the registry's audit endpoint is reachable.\n\n`)
} else if ((counts.high ?? 0) + (counts.critical ?? 0) > 0) {
  process.stdout.write(`npm audit: high or critical advisories in production dependencies: ${JSON.stringify(counts)}\n`)
  spawnSync('npm', ['audit', '--omit=dev', '--audit-level=high'], { stdio: 'inherit' })
  process.exitCode = 1
} else {
  process.stdout.write(`npm audit (production dependencies): nothing high or critical: ${JSON.stringify(counts)}\n`)
}
