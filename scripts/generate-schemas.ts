// `npm run generate`: writes src/schemas/generated/*.ts from openapi/**/*.yaml.
// The conversion lives in scripts/lib/; this file only touches the disk.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, posix } from 'node:path'
import { GENERATED_DIR, generateAll } from './lib/generate-all.ts'
import { headerComment } from './lib/openapi-to-typebox.ts'

export interface WriteResult {
  written: string[]
  unchanged: string[]
  removed: string[]
}

/**
 * Generates and writes the modules under `rootDir`; rewrites only files whose content
 * changed, and deletes generated modules whose YAML source is gone.
 */
export function writeGenerated (rootDir: string): WriteResult {
  const files = generateAll({ rootDir })
  const result: WriteResult = { written: [], unchanged: [], removed: [] }
  for (const [path, text] of files) {
    const abs = join(rootDir, path)
    if (existsSync(abs) && readFileSync(abs, 'utf8') === text) {
      result.unchanged.push(path)
      continue
    }
    mkdirSync(dirname(abs), { recursive: true })
    writeFileSync(abs, text)
    result.written.push(path)
  }
  const generatedPrefix = headerComment('').split(' from ')[0] as string
  const outDir = join(rootDir, GENERATED_DIR)
  if (existsSync(outDir)) {
    for (const name of readdirSync(outDir).sort()) {
      const path = posix.join(GENERATED_DIR, name)
      if (!name.endsWith('.ts') || files.has(path)) continue
      if (!readFileSync(join(outDir, name), 'utf8').startsWith(generatedPrefix)) continue
      rmSync(join(outDir, name))
      result.removed.push(path)
    }
  }
  return result
}

if (import.meta.main) {
  const { written, unchanged, removed } = writeGenerated(join(import.meta.dirname, '..'))
  for (const path of written) console.log(`wrote ${path}`)
  for (const path of unchanged) console.log(`unchanged ${path}`)
  for (const path of removed) console.log(`removed ${path}`)
}
