// Prints a small expression tree as TypeScript source formatted the way neostandard
// wants it: 2-space indent, single quotes, no semicolons, no trailing commas,
// `{ a: 1 }` spacing. An expression stays on one line when it fits in MAX_WIDTH
// columns; otherwise object and array literals break one entry per line, and calls
// keep their arguments on the opening line with the broken literal "hugged":
//
//   Type.Object({
//     a: Type.String()
//   }, {
//     additionalProperties: false
//   })
//
// Pure and deterministic: the same tree always prints the same text.

export const MAX_WIDTH = 100

/** A JSON-like value printed as a literal. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

export type Expr =
  | { kind: 'value', value: Json }
  | { kind: 'code', code: string }
  | { kind: 'object', entries: Array<[string, Expr]> }
  | { kind: 'array', items: Expr[] }
  | { kind: 'call', callee: string, args: Expr[] }

export function value (v: Json): Expr {
  return { kind: 'value', value: v }
}

export function code (text: string): Expr {
  return { kind: 'code', code: text }
}

export function object (entries: Array<[string, Expr]>): Expr {
  return { kind: 'object', entries }
}

export function array (items: Expr[]): Expr {
  return { kind: 'array', items }
}

export function call (callee: string, ...args: Expr[]): Expr {
  return { kind: 'call', callee, args }
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/
const CANONICAL_INDEX = /^(0|[1-9][0-9]*)$/

/** A property key: bare when JavaScript allows it (neostandard `quote-props: as-needed`). */
export function printKey (key: string): string {
  return IDENTIFIER.test(key) || CANONICAL_INDEX.test(key) ? key : printString(key)
}

/** A single-quoted string literal. */
export function printString (s: string): string {
  let out = "'"
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number
    if (ch === '\\') out += '\\\\'
    else if (ch === "'") out += "\\'"
    else if (ch === '\n') out += '\\n'
    else if (ch === '\r') out += '\\r'
    else if (ch === '\t') out += '\\t'
    else if (cp < 0x20 || cp === 0x7f || cp === 0x2028 || cp === 0x2029) {
      out += '\\u' + cp.toString(16).padStart(4, '0')
    } else out += ch
  }
  return out + "'"
}

function printNumber (n: number): string {
  if (!Number.isFinite(n)) throw new Error(`cannot print non-finite number ${n}`)
  if (Object.is(n, -0)) return '0'
  return String(n)
}

function toExpr (v: Json): Expr {
  if (Array.isArray(v)) return array(v.map(toExpr))
  if (v !== null && typeof v === 'object') {
    return object(Object.entries(v).map(([k, x]) => [k, toExpr(x)]))
  }
  return value(v)
}

/** Normalises nested JSON values into object/array nodes so one printer handles both. */
function normalise (e: Expr): Expr {
  if (e.kind === 'value' && e.value !== null && typeof e.value === 'object') return toExpr(e.value)
  return e
}

function flat (e: Expr): string {
  e = normalise(e)
  switch (e.kind) {
    case 'value': {
      const v = e.value
      if (v === null) return 'null'
      if (typeof v === 'string') return printString(v)
      if (typeof v === 'number') return printNumber(v)
      if (typeof v === 'boolean') return String(v)
      throw new Error(`cannot print value of type ${typeof v}`)
    }
    case 'code':
      return e.code
    case 'object':
      if (e.entries.length === 0) return '{}'
      return '{ ' + e.entries.map(([k, x]) => `${printKey(k)}: ${flat(x)}`).join(', ') + ' }'
    case 'array':
      return '[' + e.items.map(flat).join(', ') + ']'
    case 'call':
      return `${e.callee}(${e.args.map(flat).join(', ')})`
  }
}

/**
 * Prints `e` starting at `column` on a line whose indentation is `indent` spaces;
 * `trailing` is how many characters will follow it on its last line (`,` or `)`).
 */
export function print (e: Expr, indent = 0, column = indent, trailing = 0, forceBreak = false): string {
  e = normalise(e)
  const oneLine = flat(e)
  if (column + oneLine.length + trailing <= MAX_WIDTH && !forceBreak) return oneLine
  const pad = ' '.repeat(indent + 2)
  const close = ' '.repeat(indent)
  switch (e.kind) {
    case 'value':
    case 'code':
      return oneLine // cannot be broken
    case 'object': {
      const lines = e.entries.map(([k, x], i) => {
        const prefix = `${printKey(k)}: `
        const tail = i < e.entries.length - 1 ? 1 : 0
        return pad + prefix + print(x, indent + 2, indent + 2 + prefix.length, tail)
      })
      return '{\n' + lines.join(',\n') + '\n' + close + '}'
    }
    case 'array': {
      const lines = e.items.map((x, i) => pad + print(x, indent + 2, indent + 2, i < e.items.length - 1 ? 1 : 0))
      return '[\n' + lines.join(',\n') + '\n' + close + ']'
    }
    case 'call': {
      let out = `${e.callee}(`
      let col = column + out.length
      e.args.forEach((arg, i) => {
        if (i > 0) {
          out += ', '
          col += 2
        }
        const last = i === e.args.length - 1
        // In a call that does not fit, an object literal followed by more arguments
        // breaks too: `f({\n  a: 1\n}, {\n  b: 2\n})` rather than `f({ a: 1 }, {\n  b: 2\n})`.
        const a = normalise(arg)
        const forced = !last && a.kind === 'object' && a.entries.length > 0
        const text = print(arg, indent, col, last ? trailing + 1 : 1, forced)
        out += text
        const nl = text.lastIndexOf('\n')
        col = nl === -1 ? col + text.length : text.length - nl - 1
      })
      return out + ')'
    }
  }
}
