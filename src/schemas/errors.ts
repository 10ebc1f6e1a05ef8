import { Type, type Static, type TSchema } from 'typebox'
import { errorTable, type ErrorCode } from '../errors/table.ts'

const codes = Object.keys(errorTable) as ErrorCode[]

/** The one error format, whatever produced the error. */
export const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.String({ description: `Machine-readable code: ${codes.join(', ')}; for an upstream 400, the upstream's own code.` }),
    message: Type.String({ description: 'Human-readable explanation; never contains keys or internals.' }),
    type: Type.String({ description: 'Error family: invalid_request_error, authentication_error, permission_error, rate_limit_error, upstream_error, api_error.' }),
    request_id: Type.String({ description: 'Same as the x-request-id response header; quote it when reporting a problem.' }),
    param: Type.Optional(Type.String({ description: 'The request field at fault, when one is.' }))
  }, { additionalProperties: false })
}, { additionalProperties: false, $id: 'ErrorResponse', title: 'ErrorResponse' })

export type ErrorResponse = Static<typeof ErrorResponse>

/** Response schemas for the given statuses, each described by the table rows that answer it. */
export function errorResponses (statuses: readonly number[]): Record<number, TSchema> {
  const responses: Record<number, TSchema> = {}
  for (const status of statuses) {
    const rows = codes.filter((code) => errorTable[code].statusCode === status)
    if (rows.length === 0) throw new Error(`no row of the error table answers ${status}`)
    responses[status] = Type.Ref('ErrorResponse', {
      description: rows.map((code) => `\`${code}\`: ${errorTable[code].description}`).join(' ')
    })
  }
  return responses
}

/** Markdown table of every row (for the OpenAPI description; the README carries the same). */
export function errorTableMarkdown (): string {
  const lines = ['| status | code | type | when |', '|---|---|---|---|']
  for (const code of codes) {
    const row = errorTable[code]
    lines.push(`| ${row.statusCode} | \`${code}\` | ${row.type} | ${row.description.replaceAll('|', '\\|')} |`)
  }
  return lines.join('\n')
}
