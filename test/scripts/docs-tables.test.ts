import t from 'tap'
import { renderDocsTables } from '../../scripts/lib/docs-tables.ts'

t.test('the generated tables of docs/ are current (npm run docs)', async (t) => {
  const files = renderDocsTables()
  t.same(files.map(({ file }) => file).sort(), ['docs/configuration.md', 'docs/errors.md'])
  for (const { file, current, generated } of files) t.equal(current, generated, `${file} is stale: run npm run docs`)
})
