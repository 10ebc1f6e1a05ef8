// Converts the `components.schemas` of one OpenAPI 3.1 document into a TypeBox 1.x
// module (source text). Pure: no file system access.
//
// Only the subset of JSON Schema that the files in openapi/ use is supported; any
// other keyword throws an UnsupportedSchemaError naming the keyword and where it is,
// so that nothing is silently dropped.
//
//   type: object   -> Type.Object({ ... }, options)   (required vs Type.Optional)
//   type: array    -> Type.Array(items, options)
//   type: string / integer / number / boolean -> Type.String / Integer / Number / Boolean
//   enum (string, integer or number values)   -> Type.Enum([...], options), i.e. a plain
//                                                `enum` keyword (clearest Ajv errors)
//   $ref: '#/components/schemas/X'            -> X (the const emitted earlier)

import { array, call, code, object, print, value } from './code-printer.ts'
import type { Expr, Json } from './code-printer.ts'

export class UnsupportedSchemaError extends Error {
  override name = 'UnsupportedSchemaError'
}

type SchemaType = 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean'

// Annotations allowed on every schema, copied into the TypeBox options.
const ANNOTATIONS = ['title', 'description', 'default', 'examples', 'deprecated', 'readOnly', 'writeOnly']

// Validation keywords allowed per type, copied into the TypeBox options.
const OPTIONS_BY_TYPE: Record<SchemaType, string[]> = {
  object: ['additionalProperties'],
  array: ['minItems', 'maxItems', 'uniqueItems'],
  string: ['format', 'minLength', 'maxLength', 'pattern'],
  integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf'],
  number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf'],
  boolean: []
}

// Keywords consumed structurally (not copied as options).
const STRUCTURAL_BY_TYPE: Record<SchemaType, string[]> = {
  object: ['type', 'properties', 'required'],
  array: ['type', 'items'],
  string: ['type'],
  integer: ['type'],
  number: ['type'],
  boolean: ['type']
}

const ENUM_TYPES = ['string', 'integer', 'number']

const HINTS: Record<string, string> = {
  example: 'write it as `examples: [value]` (JSON Schema / OpenAPI 3.1)',
  nullable: 'OpenAPI 3.0 keyword; not supported',
  const: 'use a one-value `enum`'
}

const CALLEE: Record<Exclude<SchemaType, 'object' | 'array'>, string> = {
  string: 'Type.String',
  integer: 'Type.Integer',
  number: 'Type.Number',
  boolean: 'Type.Boolean'
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/
const RESERVED = new Set(['Type', 'Static'])
const REF_PREFIX = '#/components/schemas/'

export interface Context {
  /** Location for error messages, e.g. `openapi/evolink.yaml#/components/schemas/Usage`. */
  at: string
  /** Names of all schemas of the document. */
  names: ReadonlySet<string>
  /** Receives the names this schema refers to, in order of first use. */
  refs: string[]
}

function fail (ctx: Context, message: string): never {
  throw new UnsupportedSchemaError(`${message} at ${ctx.at}`)
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function escapePointer (segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1')
}

function child (ctx: Context, ...segments: string[]): Context {
  return { ...ctx, at: ctx.at + segments.map(s => '/' + escapePointer(s)).join('') }
}

function toJson (ctx: Context, v: unknown): Json {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) fail(ctx, `non-finite number ${v}`)
    return v
  }
  if (Array.isArray(v)) return v.map((x, i) => toJson(child(ctx, String(i)), x))
  if (isRecord(v) && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, Json> = {}
    for (const [k, x] of Object.entries(v)) out[k] = toJson(child(ctx, k), x)
    return out
  }
  return fail(ctx, `value is not plain JSON (${Object.prototype.toString.call(v)})`)
}

// Light type checks on keyword values, so that a typo such as `maxLength: '20'`
// fails here instead of producing a schema Ajv rejects at start-up.
function checkKeywordValue (ctx: Context, keyword: string, v: unknown): void {
  const expect = (ok: boolean, what: string): void => {
    if (!ok) fail(ctx, `keyword "${keyword}" must be ${what}`)
  }
  switch (keyword) {
    case 'title':
    case 'description':
    case 'format':
    case 'pattern':
      return expect(typeof v === 'string', 'a string')
    case 'deprecated':
    case 'readOnly':
    case 'writeOnly':
    case 'uniqueItems':
      return expect(typeof v === 'boolean', 'a boolean')
    case 'additionalProperties':
      return expect(typeof v === 'boolean', 'a boolean (schemas are not supported)')
    case 'examples':
      return expect(Array.isArray(v), 'an array')
    case 'minLength':
    case 'maxLength':
    case 'minItems':
    case 'maxItems':
      return expect(Number.isSafeInteger(v) && (v as number) >= 0, 'a non-negative integer')
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return expect(typeof v === 'number' && Number.isFinite(v), 'a number')
    case 'multipleOf':
      return expect(typeof v === 'number' && v > 0, 'a positive number')
  }
}

function unsupported (ctx: Context, keyword: string, allowed: string[], what: string): never {
  const hint = HINTS[keyword]
  return fail(ctx, `Unsupported keyword "${keyword}" for ${what}` +
    (hint === undefined ? ` (supported: ${allowed.join(', ')})` : `: ${hint}`))
}

/** Collects the TypeBox options of `schema`, keeping the keyword order of the source. */
function options (ctx: Context, schema: Record<string, unknown>, structural: string[], allowed: string[], what: string): Expr | undefined {
  const entries: Array<[string, Expr]> = []
  for (const [keyword, v] of Object.entries(schema)) {
    if (structural.includes(keyword)) continue
    if (!allowed.includes(keyword)) unsupported(ctx, keyword, [...structural, ...allowed], what)
    checkKeywordValue(ctx, keyword, v)
    entries.push([keyword, value(toJson(child(ctx, keyword), v))])
  }
  return entries.length === 0 ? undefined : object(entries)
}

function withOptions (callee: string, args: Expr[], opts: Expr | undefined): Expr {
  return call(callee, ...args, ...(opts === undefined ? [] : [opts]))
}

function refToExpr (ctx: Context, schema: Record<string, unknown>): Expr {
  const siblings = Object.keys(schema).filter(k => k !== '$ref')
  if (siblings.length > 0) fail(ctx, `keywords next to $ref are not supported (${siblings.join(', ')})`)
  const ref = schema.$ref
  if (typeof ref !== 'string' || !ref.startsWith(REF_PREFIX)) {
    fail(ctx, `only local references of the form '${REF_PREFIX}<Name>' are supported, got ${JSON.stringify(ref)}`)
  }
  const name = ref.slice(REF_PREFIX.length)
  if (!ctx.names.has(name)) fail(ctx, `$ref to unknown schema "${name}"`)
  if (!ctx.refs.includes(name)) ctx.refs.push(name)
  return code(name)
}

function enumToExpr (ctx: Context, schema: Record<string, unknown>): Expr {
  const type = schema.type
  if (typeof type !== 'string' || !ENUM_TYPES.includes(type)) {
    fail(ctx, `enum needs "type" ${ENUM_TYPES.join(', ')} (got ${JSON.stringify(type)})`)
  }
  const values = schema.enum
  if (!Array.isArray(values) || values.length === 0) fail(ctx, 'enum must be a non-empty array')
  values.forEach((v, i) => {
    const ok = type === 'string'
      ? typeof v === 'string'
      : type === 'integer' ? Number.isSafeInteger(v) : typeof v === 'number' && Number.isFinite(v)
    if (!ok) fail(child(ctx, 'enum', String(i)), `enum value ${JSON.stringify(v)} is not of type ${type}`)
  })
  if (new Set(values).size !== values.length) fail(ctx, 'enum values must be unique')
  // `type` is implied by the values and left out so Ajv reports a single, plain
  // "must be equal to one of the allowed values" error.
  const opts = options(ctx, schema, ['type', 'enum'], ANNOTATIONS, `enum of ${type}`)
  return withOptions('Type.Enum', [array(values.map(v => value(v as string | number)))], opts)
}

function objectToExpr (ctx: Context, schema: Record<string, unknown>): Expr {
  const properties = schema.properties ?? {}
  if (!isRecord(properties)) fail(child(ctx, 'properties'), 'properties must be an object')
  const required = schema.required ?? []
  if (!Array.isArray(required) || !required.every(r => typeof r === 'string')) {
    fail(child(ctx, 'required'), 'required must be an array of strings')
  }
  for (const name of required) {
    if (!Object.hasOwn(properties, name)) fail(child(ctx, 'required'), `required property "${name}" is not in properties`)
  }
  const entries: Array<[string, Expr]> = Object.entries(properties).map(([name, sub]) => {
    const expr = schemaToExpr(child(ctx, 'properties', name), sub)
    return [name, required.includes(name) ? expr : call('Type.Optional', expr)]
  })
  const opts = options(ctx, schema, STRUCTURAL_BY_TYPE.object, [...OPTIONS_BY_TYPE.object, ...ANNOTATIONS], 'type object')
  return withOptions('Type.Object', [object(entries)], opts)
}

/**
 * Converts one JSON schema into a TypeBox expression. `ctx.refs` receives the names
 * of the component schemas it refers to.
 */
export function schemaToExpr (ctx: Context, schema: unknown): Expr {
  if (!isRecord(schema)) return fail(ctx, 'schema must be an object')
  if ('$ref' in schema) return refToExpr(ctx, schema)
  if ('enum' in schema) return enumToExpr(ctx, schema)
  const type = schema.type
  if (typeof type !== 'string' || !Object.hasOwn(OPTIONS_BY_TYPE, type)) {
    const found = type === undefined ? 'no "type"' : `type ${JSON.stringify(type)}`
    const keywords = Object.keys(schema).filter(k => k !== 'type' && !ANNOTATIONS.includes(k))
    const extra = keywords.length > 0 ? ` (keywords: ${keywords.join(', ')})` : ''
    return fail(ctx, `Unsupported schema: ${found}${extra}; expected $ref, enum or type ` +
      Object.keys(OPTIONS_BY_TYPE).join(' | '))
  }
  const t = type as SchemaType
  const allowed = [...OPTIONS_BY_TYPE[t], ...ANNOTATIONS]
  switch (t) {
    case 'object':
      return objectToExpr(ctx, schema)
    case 'array': {
      if (!('items' in schema)) fail(ctx, 'array needs "items"')
      const items = schemaToExpr(child(ctx, 'items'), schema.items)
      return withOptions('Type.Array', [items], options(ctx, schema, STRUCTURAL_BY_TYPE.array, allowed, 'type array'))
    }
    default:
      return withOptions(CALLEE[t], [], options(ctx, schema, STRUCTURAL_BY_TYPE[t], allowed, `type ${t}`))
  }
}

export function headerComment (source: string): string {
  return `// GENERATED by \`npm run generate\` from ${source}. Do not edit by hand.`
}

/**
 * Converts a `components.schemas` map into the text of a TypeBox module: for each
 * schema `export const Name = Type...` and `export type Name = Static<typeof Name>`,
 * referenced schemas first, otherwise in source order. `source` is the YAML path
 * relative to the repository root, used in the header and in error messages.
 */
export function schemasToModule (schemas: Record<string, unknown>, source: string): string {
  const names = new Set(Object.keys(schemas))
  const converted = new Map<string, { expr: Expr, refs: string[] }>()
  for (const [name, schema] of Object.entries(schemas)) {
    const ctx: Context = { at: `${source}#${REF_PREFIX.slice(1)}${escapePointer(name)}`, names, refs: [] }
    if (!IDENTIFIER.test(name) || RESERVED.has(name)) {
      fail(ctx, `schema name "${name}" is not usable as a TypeScript identifier`)
    }
    converted.set(name, { expr: schemaToExpr(ctx, schema), refs: ctx.refs })
  }

  const order: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (name: string, path: string[]): void => {
    if (state.get(name) === 'done') return
    if (state.get(name) === 'visiting') {
      throw new UnsupportedSchemaError(`cyclic $ref ${[...path, name].join(' -> ')} in ${source} is not supported`)
    }
    state.set(name, 'visiting')
    for (const dep of converted.get(name)?.refs ?? []) visit(dep, [...path, name])
    state.set(name, 'done')
    order.push(name)
  }
  for (const name of converted.keys()) visit(name, [])

  const blocks = order.map(name => {
    const { expr } = converted.get(name) as { expr: Expr }
    const prefix = `export const ${name} = `
    return prefix + print(expr, 0, prefix.length) + '\n' +
      `export type ${name} = Static<typeof ${name}>\n`
  })
  return [
    headerComment(source) + '\n' + "import { Type, type Static } from 'typebox'\n",
    ...blocks
  ].join('\n')
}

/**
 * Converts an OpenAPI document (already parsed from YAML). Returns undefined when it
 * has no `components.schemas` (nothing to generate).
 */
export function documentToModule (document: unknown, source: string): string | undefined {
  if (!isRecord(document)) throw new UnsupportedSchemaError(`${source} is not a YAML mapping`)
  const components = document.components
  if (components === undefined) return undefined
  if (!isRecord(components)) throw new UnsupportedSchemaError(`${source}: components must be a mapping`)
  const schemas = components.schemas
  if (schemas === undefined) return undefined
  if (!isRecord(schemas)) throw new UnsupportedSchemaError(`${source}: components.schemas must be a mapping`)
  if (Object.keys(schemas).length === 0) return undefined
  return schemasToModule(schemas, source)
}
