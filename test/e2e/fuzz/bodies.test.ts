import t from 'tap'
import fc from 'fast-check'
import {
  announceSeed, fuzzParameters, mutatedBodyTextArb, prototypeIntact, randomBodyArb, rawBodyArb, sendChecked, startFuzzGateway, StatusTally
} from './arbitraries.ts'

// Property: whatever the body of POST /v1/videos/generations, the answer is 2xx
// or a 4xx in the one error format (request_id = x-request-id), never a 5xx or a
// rejected inject, and the upstream is called only when the answer is 2xx.

t.test('fuzzed request bodies', async (t) => {
  announceSeed(t)
  const fx = await startFuzzGateway(t)
  // `narrow` may not use the fast model: its valid bodies get 403s (also in the format).
  const callerArb = fc.constantFrom(fx.tenant.authorization, fx.tenant.authorization, fx.tenant.authorization, fx.narrow.authorization)

  const properties: Array<[string, fc.Arbitrary<string | Buffer>, number]> = [
    ['valid bodies mutated: wrong types, missing and extra fields, boundaries, __proto__/constructor/prototype keys, deep nesting, arrays, null', mutatedBodyTextArb, 1800],
    ['JSON text mutated: duplicate keys, truncation, invalid UTF-8 and raw bytes, BOM, garbage, escaped keys, padding around the body limit', rawBodyArb, 1000],
    ['random JSON values, random texts and random bytes as application/json', randomBodyArb, 700]
  ]
  for (const [name, bodyArb, runs] of properties) {
    t.test(name, async (t) => {
      const tally = new StatusTally()
      await fc.assert(fc.asyncProperty(bodyArb, callerArb, async (payload, authorization) => {
        await sendChecked(fx, {
          method: 'POST',
          url: '/v1/videos/generations',
          headers: { authorization, 'content-type': 'application/json' },
          payload
        }, tally)
      }), fuzzParameters(runs))
      t.comment(`${tally.total} requests, by status: ${tally}`)
      t.ok(prototypeIntact(), 'Object.prototype untouched')
    })
  }
})
