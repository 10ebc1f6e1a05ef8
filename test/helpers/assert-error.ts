import type { Test } from 'tap'

export interface ExpectedError {
  status: number
  code: string
  type: string
  message: string | RegExp
  param?: string
}

/**
 * Asserts a whole error answer: the status, the body's exact set of fields,
 * each value, and that request_id is the x-request-id header.
 */
export function assertErrorResponse (t: Test, response: { statusCode: number, headers: Record<string, unknown>, body: string }, expected: ExpectedError): void {
  t.equal(response.statusCode, expected.status, `status ${expected.status}`)
  t.match(response.headers['content-type'], /^application\/json/)
  const body = JSON.parse(response.body) as { error: Record<string, unknown> }
  t.same(Object.keys(body), ['error'], 'only an error object')
  const wantedKeys = ['code', 'message', 'type', 'request_id', ...(expected.param === undefined ? [] : ['param'])].sort()
  t.same(Object.keys(body.error).sort(), wantedKeys, 'exactly the error fields')
  t.equal(body.error.code, expected.code)
  t.equal(body.error.type, expected.type)
  if (typeof expected.message === 'string') t.equal(body.error.message, expected.message)
  else t.match(body.error.message, expected.message)
  if (expected.param !== undefined) t.equal(body.error.param, expected.param)
  t.equal(body.error.request_id, response.headers['x-request-id'], 'request_id is the x-request-id header')
}
