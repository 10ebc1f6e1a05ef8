import { appendFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Key-leak canary: every response (status, headers, body) and every log line
 * that the test suite's gateways produce is appended here, one file per test
 * process; test/leak-scan/after.ts reads them all when the suite ends and fails
 * if a canary key appears. The canaries are the test upstream key and every
 * tenant key made by makeTenant (all start with `vgk_test_`).
 */
export const leakCaptureDir = fileURLToPath(new URL('../artifacts/leak-capture/', import.meta.url))
// The last one is test/helpers/webhooks.ts's testWebhookSecret: tenant webhook secrets must not leak either.
export const canaryPatterns = [/sk-evo-test-upstream-key/, /vgk_test_/, /MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/]

const file = join(leakCaptureDir, `${process.pid}.ndjson`)

export function captureForLeakScan (kind: 'response' | 'log' | 'process-output', text: string): void {
  const line = JSON.stringify({ kind, text }) + '\n'
  try {
    appendFileSync(file, line)
  } catch {
    // First write of this process, or another tap run just cleared the folder.
    mkdirSync(leakCaptureDir, { recursive: true })
    appendFileSync(file, line)
  }
}
