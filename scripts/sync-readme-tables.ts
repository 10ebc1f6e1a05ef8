import { readFileSync, writeFileSync } from 'node:fs'
import { errorTable } from '../src/errors/table.ts'
import { describeConfig } from '../src/config.ts'

/**
 * `npm run docs`: rewrites the README's error table and configuration table
 * from src/errors/table.ts and src/config.ts (tests check that every row is there).
 */
const readmePath = new URL('../README.md', import.meta.url)
let readme = readFileSync(readmePath, 'utf8')

function replaceTable (text: string, header: string, rows: string[]): string {
  const start = text.indexOf(header)
  if (start === -1) throw new Error(`README has no table starting with ${header}`)
  const bodyStart = text.indexOf('\n', text.indexOf('\n', start) + 1) + 1
  let end = bodyStart
  while (text.startsWith('|', end)) end = text.indexOf('\n', end) + 1
  return text.slice(0, bodyStart) + rows.join('\n') + '\n' + text.slice(end)
}

readme = replaceTable(readme, '| status | code | type | when |', Object.entries(errorTable).map(([code, row]) =>
  `| ${row.statusCode} | \`${code}\` | ${row.type} | ${row.description.replaceAll('|', '\\|')} |`))
readme = replaceTable(readme, '| variable | default | meaning |', describeConfig().map(({ env, schema }) =>
  `| \`${env}\` | ${schema.default === '' ? '(empty)' : `\`${String(schema.default)}\``} | ${String(schema.description)} |`))
writeFileSync(readmePath, readme)
