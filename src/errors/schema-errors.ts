import type { TSchema } from 'typebox'
import { Value } from 'typebox/value'

/** `/tenants/0/keys` → `tenants[0].keys` */
export function formatPath (instancePath: string, root = ''): string {
  return instancePath.split('/').filter(Boolean).reduce(
    (path, part) => /^\d+$/.test(part) ? `${path}[${part}]` : (path === '' ? part : `${path}.${part}`),
    root
  )
}

/**
 * The first problem of a value against a schema, in words, or null when it is
 * valid. Used for boot-time files and settings, where the message must say
 * exactly which field to fix.
 */
export function firstSchemaProblem (schema: TSchema, value: unknown, root = ''): { path: string, message: string } | null {
  const issue = Value.Errors(schema, value)[0]
  if (issue === undefined) return null
  const path = formatPath(issue.instancePath, root)
  // TypeBox reports an unknown property as `false` schema at the property's own path.
  if (issue.keyword === 'boolean' && issue.schemaPath.endsWith('additionalProperties')) {
    const cut = path.lastIndexOf('.')
    return { path: cut === -1 ? root : path.slice(0, cut), message: `has an unknown field "${path.slice(cut + 1)}"` }
  }
  const allowed = (issue.params as { allowedValues?: unknown[] }).allowedValues
  return { path, message: `${issue.message}${allowed === undefined ? '' : ` (${allowed.join(', ')})`}` }
}
