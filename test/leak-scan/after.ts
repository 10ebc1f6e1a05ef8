import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { canaryPatterns, leakCaptureDir } from '../helpers/leak-capture.ts'

t.test('no canary key in any response or log line the suite produced', async (t) => {
  const counts = { response: 0, log: 0, 'process-output': 0 }
  const leaks: string[] = []
  const files = existsSync(leakCaptureDir) ? readdirSync(leakCaptureDir) : []
  for (const name of files) {
    for (const line of readFileSync(join(leakCaptureDir, name), 'utf8').split('\n')) {
      if (line === '') continue
      const { kind, text } = JSON.parse(line) as { kind: keyof typeof counts, text: string }
      counts[kind] += 1
      for (const canary of canaryPatterns) {
        if (canary.test(text)) leaks.push(`${kind} in ${name}: ${text.slice(0, 300)}`)
      }
    }
  }
  t.comment(`leak scan: ${counts.response} responses, ${counts.log} log lines, ${counts['process-output']} process outputs from ${files.length} test processes`)
  t.ok(counts.response > 0 && counts.log > 0, 'the capture saw traffic')
  t.same(leaks, [], 'leaked keys found: 0')
})
