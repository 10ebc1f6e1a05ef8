import t from 'tap'
import fc from 'fast-check'
import {
  allowedOrigin, announceSeed, fuzzParameters, maybe, methods, prototypeIntact, sendChecked, startFuzzGateway, StatusTally, toJsonText, urlArb,
  validBodyArb, type FuzzRequest
} from './arbitraries.ts'

// Property: whatever the path (encoded, double-encoded, overlong task ids,
// unicode, `..`, %00, query strings, trailing slashes) and the method (GET POST
// PUT DELETE PATCH HEAD OPTIONS on every route), the answer is 2xx or a 4xx in
// the one error format (HEAD: status only; a CORS preflight may be 204), never a
// 5xx, and never an upstream call unless 2xx. The one 3xx allowed is Swagger UI's
// redirect from /docs/static/index.html: to a same-origin /docs path, never to itself.

t.test('fuzzed paths and methods', async (t) => {
  announceSeed(t)
  const fx = await startFuzzGateway(t)
  const caseArb = fc.record({
    method: fc.oneof({ weight: 20, arbitrary: fc.constantFrom(...methods) }, { weight: 1, arbitrary: fc.constantFrom('TRACE', 'SEARCH', 'PROPFIND') }),
    url: urlArb({ taskId: fx.taskId, otherTaskId: fx.otherTaskId }),
    authorization: fc.constantFrom(fx.tenant.authorization, fx.tenant.authorization, fx.tenant.authorization, fx.other.authorization, undefined),
    origin: maybe(fc.constantFrom(allowedOrigin, 'https://evil.example', 'null', ''), 1, 3),
    preflightMethod: maybe(fc.constantFrom('POST', 'GET', 'DELETE', 'x'), 1, 2),
    body: maybe(validBodyArb.map(toJsonText), 2, 1)
  })

  const tally = new StatusTally()
  const methodsSeen = new Set<string>()
  await fc.assert(fc.asyncProperty(caseArb, async (c) => {
    const headers: Record<string, string> = {}
    if (c.authorization !== undefined) headers.authorization = c.authorization
    if (c.origin !== undefined) headers.origin = c.origin
    if (c.preflightMethod !== undefined) headers['access-control-request-method'] = c.preflightMethod
    const request: FuzzRequest = { method: c.method, url: c.url, headers }
    if (c.body !== undefined && !['GET', 'HEAD'].includes(c.method)) {
      headers['content-type'] = 'application/json'
      request.payload = c.body
    }
    methodsSeen.add(c.method)
    await sendChecked(fx, request, tally)
  }), fuzzParameters(2300))
  t.comment(`${tally.total} requests, by status: ${tally}; methods: ${[...methodsSeen].sort().join(' ')}`)
  t.ok(prototypeIntact(), 'Object.prototype untouched (query strings with __proto__ included)')
})
