import { readFileSync } from 'node:fs'
import { errorTable } from '../../src/errors/table.ts'
import { describeConfig } from '../../src/config.ts'

/** The generated tables of docs/: which file, which table (by its header line), and its rows from the code. */
export const docsTables = [
  {
    file: 'docs/errors.md',
    header: '| status | code | type | when |',
    rows: () => Object.entries(errorTable).map(([code, row]) =>
      `| ${row.statusCode} | \`${code}\` | ${row.type} | ${row.description.replaceAll('|', '\\|')} |`)
  },
  {
    file: 'docs/configuration.md',
    header: '| variable | default | meaning |',
    rows: () => describeConfig().map(({ env, schema }) =>
      `| \`${env}\` | ${schema.default === '' ? '(empty)' : `\`${String(schema.default)}\``} | ${String(schema.description)} |`)
  }
]

export const repositoryRoot = new URL('../../', import.meta.url)

function replaceTable (file: string, text: string, header: string, rows: string[]): string {
  const start = text.indexOf(header)
  if (start === -1) throw new Error(`${file} has no table starting with ${header}`)
  const bodyStart = text.indexOf('\n', text.indexOf('\n', start) + 1) + 1
  let end = bodyStart
  while (text.startsWith('|', end)) end = text.indexOf('\n', end) + 1
  return text.slice(0, bodyStart) + rows.join('\n') + '\n' + text.slice(end)
}

/** Every docs file that holds a generated table, as `npm run docs` would write it: `{ file, current, generated }`. */
export function renderDocsTables (): Array<{ file: string, current: string, generated: string }> {
  const byFile = new Map<string, { current: string, generated: string }>()
  for (const { file, header, rows } of docsTables) {
    const entry = byFile.get(file) ?? { current: readFileSync(new URL(file, repositoryRoot), 'utf8'), generated: '' }
    entry.generated = replaceTable(file, entry.generated === '' ? entry.current : entry.generated, header, rows())
    byFile.set(file, entry)
  }
  return [...byFile].map(([file, texts]) => ({ file, ...texts }))
}
