import { writeFileSync } from 'node:fs'
import { renderDocsTables, repositoryRoot } from './lib/docs-tables.ts'

/**
 * `npm run docs`: rewrites the generated tables of docs/ (the error table in
 * docs/errors.md, the configuration table in docs/configuration.md) from
 * src/errors/table.ts and src/config.ts; test/scripts/docs-tables.test.ts fails when they are stale.
 */
for (const { file, current, generated } of renderDocsTables()) {
  if (generated !== current) writeFileSync(new URL(file, repositoryRoot), generated)
}
