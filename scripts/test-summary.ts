// The one-line verdict of a test run for CI: `tests: N passed, N failed`, counted from the raw
// TAP that tap keeps per test file in .tap/test-results (with tap's own parser, not with sed),
// after a list of the test points that failed. Counts the assertions at every depth; a
// subtest's closing point counts only when the subtest asserted nothing itself (a property
// test that throws on failure). Exit status 1 on a failure, or when no results exist.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { Parser } from 'tap-parser'

const resultsDir = process.argv[2] ?? '.tap/test-results'

interface Tally { passed: number, failed: number, failures: string[] }

function listTapFiles (dir: string): string[] {
  let entries
  try { entries = readdirSync(dir, { withFileTypes: true }) } catch { return [] }
  return entries.flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return listTapFiles(path)
    return entry.name.endsWith('.tap') ? [path] : []
  })
}

/**
 * Listens to a parser and to every subtest parser it opens; returns a live count of the
 * assertions seen at every depth below it.
 */
function tallyInto (parser: Parser, tally: Tally, where: string): { assertions: number } {
  const seen = { assertions: 0 }
  // A subtest's block comes first, then the point that sums it up: that point is not an
  // assertion, unless the subtest had none of its own (tap counts an empty subtest once).
  const openSubtests: Array<{ assertions: number }> = []
  parser.on('child', (child: Parser) => {
    openSubtests.push(tallyInto(child, tally, `${where} > ${child.name}`))
  })
  parser.on('assert', (point: { ok: boolean, name: string, todo: unknown }) => {
    const subtest = openSubtests.shift()
    if (subtest !== undefined) {
      seen.assertions += subtest.assertions
      if (subtest.assertions > 0) return
    }
    seen.assertions += 1
    if (point.ok || point.todo !== false) {
      tally.passed += 1
    } else {
      tally.failed += 1
      tally.failures.push(`${where}: ${point.name}`)
    }
  })
  return seen
}

const tally: Tally = { passed: 0, failed: 0, failures: [] }
const files = listTapFiles(resultsDir)
for (const file of files) {
  const parser = new Parser()
  const name = relative(resultsDir, file).replace(/\.tap$/, '')
  tallyInto(parser, tally, name)
  let bailedOut = false
  parser.on('bailout', () => { bailedOut = true })
  parser.end(readFileSync(file, 'utf8'))
  if (bailedOut || parser.results?.ok === false) {
    // A file that crashed or timed out without a failing point still fails the run.
    if (!tally.failures.some((failure) => failure.startsWith(name))) {
      tally.failed += 1
      tally.failures.push(`${name}: did not complete (${parser.results?.plan.skipReason ?? 'crashed, bailed out or timed out'})`)
    }
  }
}
if (tally.failures.length > 0) {
  process.stdout.write(`failed test points:\n${tally.failures.slice(0, 40).map((failure) => `  ${failure}\n`).join('')}`)
}
if (files.length === 0) process.stdout.write(`no test results in ${resultsDir}: the tests did not run\n`)
process.stdout.write(`tests: ${tally.passed} passed, ${tally.failed} failed\n`)
process.exitCode = tally.failed > 0 || files.length === 0 ? 1 : 0
