// Finds every openapi/**/*.yaml, converts its components.schemas to TypeBox and
// returns the module texts keyed by output path. Reads files, writes nothing.

import { readdirSync, readFileSync } from 'node:fs'
import { basename, extname, join, posix } from 'node:path'
import { parse } from 'yaml'
import { documentToModule } from './openapi-to-typebox.ts'

export const OPENAPI_DIR = 'openapi'
export const GENERATED_DIR = 'src/schemas/generated'

export interface GenerateOptions {
  /** Repository root; the other paths are relative to it. */
  rootDir: string
  /** Directory holding the YAML files (default `openapi`). */
  openapiDir?: string
  /** Directory of the generated modules (default `src/schemas/generated`). */
  outDir?: string
}

/** `.yaml` / `.yml` files under `dir`, as sorted posix paths relative to `dir`. */
export function listYamlFiles (dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter(entry => entry.isFile() && /\.ya?ml$/.test(entry.name))
    .map(entry => posix.join(...join(entry.parentPath, entry.name).slice(dir.length + 1).split(/[\\/]/)))
    .sort()
}

/**
 * Generates one module per YAML file that has `components.schemas`:
 * `<outDir>/<file basename>.ts`. Keys are posix paths relative to `rootDir`,
 * in sorted order.
 */
export function generateAll (options: GenerateOptions): Map<string, string> {
  const openapiDir = options.openapiDir ?? OPENAPI_DIR
  const outDir = options.outDir ?? GENERATED_DIR
  const absDir = join(options.rootDir, openapiDir)
  const out = new Map<string, string>()
  const sources = new Map<string, string>()
  for (const file of listYamlFiles(absDir)) {
    const source = posix.join(openapiDir, file)
    const document: unknown = parse(readFileSync(join(absDir, file), 'utf8'))
    const text = documentToModule(document, source)
    if (text === undefined) continue
    const target = posix.join(outDir, basename(file, extname(file)) + '.ts')
    const previous = sources.get(target)
    if (previous !== undefined) {
      throw new Error(`${source} and ${previous} would both generate ${target}; rename one of them`)
    }
    sources.set(target, source)
    out.set(target, text)
  }
  return new Map([...out].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
}
