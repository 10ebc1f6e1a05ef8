import { connect } from 'node:net'
import t from 'tap'
import fc from 'fast-check'
import {
  announceSeed, answerProblems, authorizationArb, contentLengthArb, contentLengthValue, contentTypeArb, fuzzParameters, headerNameArb,
  headerSizeTargetArb, headerValueArb, keepLeakCaptureDir, maybe, padHeaders, prototypeIntact, randomBodyArb, sendChecked, startFuzzGateway,
  StatusTally, toJsonText, validBodyArb, type FuzzGateway, type FuzzRequest
} from './arbitraries.ts'

// Property: whatever the headers (oversized near and over Node's 16 KiB limit,
// repeated, malformed Authorization, odd or missing content types, weird
// content-length), the answer is 2xx or a 4xx in the one error format
// (request_id = x-request-id), never a 5xx, and never an upstream call unless 2xx.

type Target = 'create' | 'task' | 'healthz' | 'unknown'

interface HeaderCase {
  target: Target
  authorization: string | string[] | undefined
  contentType: string | string[] | undefined
  contentLength: Parameters<typeof contentLengthValue>[0]
  requestId: string | string[] | undefined
  extra: Array<[string, string | string[]]>
  size: number | undefined
  body: string | Buffer
}

function headerCaseArb (fx: FuzzGateway): fc.Arbitrary<HeaderCase> {
  return fc.record({
    target: fc.constantFrom<Target>('create', 'create', 'create', 'task', 'healthz', 'unknown'),
    authorization: authorizationArb({ key: fx.tenant.key, otherKey: fx.other.key }),
    contentType: contentTypeArb,
    contentLength: contentLengthArb,
    requestId: maybe(fc.oneof(
      fc.constantFrom('abc', 'a'.repeat(128), 'a'.repeat(129), 'a b', 'a\u0000', '', ' ', 'x-1.2:3_4', '😀', '../x', '{"a":1}'),
      fc.string({ maxLength: 20 }),
      fc.constant<string[]>(['dup-1', 'dup-2'])
    ), 1, 2),
    extra: fc.array(fc.tuple(headerNameArb, fc.oneof({ weight: 4, arbitrary: headerValueArb }, { weight: 1, arbitrary: fc.array(headerValueArb, { minLength: 2, maxLength: 3 }) })), { maxLength: 5 }),
    size: headerSizeTargetArb,
    body: fc.oneof({ weight: 4, arbitrary: validBodyArb.map(toJsonText) }, { weight: 1, arbitrary: randomBodyArb })
  })
}

function requestOf (fx: FuzzGateway, c: HeaderCase): FuzzRequest {
  let headers: Record<string, string | string[]> = {}
  for (const [name, value] of c.extra) headers[name] = value
  if (c.requestId !== undefined) headers['x-request-id'] = c.requestId
  if (c.authorization !== undefined) headers.authorization = c.authorization
  if (c.contentType !== undefined) headers['content-type'] = c.contentType
  const payload = c.target === 'create' ? c.body : undefined
  if (payload !== undefined) {
    const length = contentLengthValue(c.contentLength, Buffer.byteLength(payload))
    if (length !== undefined) headers['content-length'] = length
  }
  if (c.size !== undefined) headers = padHeaders(headers, c.size)
  const url = { create: '/v1/videos/generations', task: `/v1/tasks/${fx.taskId}`, healthz: '/healthz', unknown: '/v1/nope' }[c.target]
  return { method: c.target === 'create' ? 'POST' : 'GET', url, headers, ...(payload === undefined ? {} : { payload }) }
}

// ---------------------------------------------------------------------------
// Over a real socket: Node's HTTP parser (header size limit, invalid bytes) answers first.

interface RawCase {
  route: 'create' | 'task' | 'healthz'
  target: 'plain' | 'query' | 'non-ascii' | 'long'
  authorization: string | string[] | undefined
  contentType: string | string[] | undefined
  contentLength: 'exact' | 'minus1' | 'negative' | 'text' | 'float' | 'hex' | 'spaced' | 'repeated' | 'conflicting' | 'none'
  transferEncoding: 'none' | 'chunked' | 'chunked+length' | 'gzip' | 'chunked, chunked' | 'xchunked'
  host: 'normal' | 'missing' | 'duplicate' | 'empty'
  malformed: string | undefined
  /** control characters in header values replaced (most cases), so that many requests get past Node's parser */
  clean: boolean
  extra: Array<[string, string]>
  size: number | undefined
  body: string | Buffer
}

function rawCaseArb (fx: FuzzGateway): fc.Arbitrary<RawCase> {
  return fc.record({
    route: fc.constantFrom('create' as const, 'create' as const, 'task' as const, 'healthz' as const),
    target: fc.constantFrom('plain' as const, 'plain' as const, 'plain' as const, 'query' as const, 'non-ascii' as const, 'long' as const),
    authorization: authorizationArb({ key: fx.tenant.key, otherKey: fx.other.key }),
    contentType: contentTypeArb,
    contentLength: fc.constantFrom('exact' as const, 'exact' as const, 'exact' as const, 'minus1' as const, 'negative' as const, 'text' as const,
      'float' as const, 'hex' as const, 'spaced' as const, 'repeated' as const, 'conflicting' as const, 'none' as const),
    transferEncoding: fc.constantFrom('none' as const, 'none' as const, 'none' as const, 'none' as const, 'chunked' as const,
      'chunked+length' as const, 'gzip' as const, 'chunked, chunked' as const, 'xchunked' as const),
    host: fc.constantFrom('normal' as const, 'normal' as const, 'normal' as const, 'missing' as const, 'duplicate' as const, 'empty' as const),
    malformed: maybe(fc.constantFrom('NoColonHeader', 'Bad Name: x', ': empty-name', ' leading-space: x', 'x-obs: a\r\n folded', 'x-ctl: a\u0001b',
      'x-nul: a\u0000b', 'x-utf8: é', 'x-del: a\u007fb', 'x-bare-cr: a\rb', 'x-tab:\tok'), 1, 6),
    clean: fc.constantFrom(true, true, true, false),
    extra: fc.array(fc.tuple(headerNameArb.filter((name) => name !== 'host'), headerValueArb), { maxLength: 4 }),
    size: headerSizeTargetArb,
    body: fc.oneof({ weight: 4, arbitrary: validBodyArb.map(toJsonText) }, { weight: 1, arbitrary: randomBodyArb })
  })
}

/** C0 controls but HTAB, and DEL: what Node's parser refuses in a header value. */
function isControl (char: string): boolean {
  const code = char.charCodeAt(0)
  return (code < 0x20 && code !== 0x09) || code === 0x7f
}

function rawRequestOf (fx: FuzzGateway, c: RawCase): { method: string, url: string, headers: Record<string, string | string[]>, bytes: Buffer } {
  const method = c.route === 'create' ? 'POST' : 'GET'
  const base = { create: '/v1/videos/generations', task: `/v1/tasks/${fx.taskId}`, healthz: '/healthz' }[c.route]
  const url = { plain: base, query: `${base}?a=1&b=%zz&c`, 'non-ascii': `${base}é`, long: `${base}?pad=${'q'.repeat(20_000)}` }[c.target]
  let headers: Record<string, string | string[]> = {}
  if (c.host === 'normal') headers.host = '127.0.0.1'
  if (c.host === 'duplicate') headers.host = ['127.0.0.1', 'evil.example']
  if (c.host === 'empty') headers.host = ''
  for (const [name, value] of c.extra) headers[name] = value
  if (c.authorization !== undefined) headers.authorization = c.authorization
  if (c.contentType !== undefined) headers['content-type'] = c.contentType
  let body: Buffer = Buffer.alloc(0)
  if (c.route === 'create') {
    const payload = typeof c.body === 'string' ? Buffer.from(c.body, 'utf8') : c.body
    const chunked = c.transferEncoding === 'chunked' || c.transferEncoding === 'chunked+length'
    body = chunked ? Buffer.concat([Buffer.from(`${payload.length.toString(16)}\r\n`), payload, Buffer.from('\r\n0\r\n\r\n')]) : payload
    if (c.transferEncoding !== 'none') headers['transfer-encoding'] = c.transferEncoding === 'chunked+length' ? 'chunked' : c.transferEncoding
    const lengthMode = c.transferEncoding === 'chunked' ? 'none' : c.contentLength
    if (lengthMode !== 'none') {
      const length = contentLengthValue(lengthMode, payload.length)
      if (length !== undefined) headers['content-length'] = length
    }
  }
  headers.connection = 'close'
  if (c.size !== undefined) headers = padHeaders(headers, c.size)
  const lines = [`${method} ${url} HTTP/1.1`]
  const clean = (value: string): string => c.clean ? [...value].map((char) => isControl(char) ? '?' : char).join('') : value
  for (const [name, value] of Object.entries(headers)) for (const one of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${clean(one)}`)
  if (c.malformed !== undefined) lines.splice(1, 0, c.malformed)
  return { method, url, headers, bytes: Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8'), body]) }
}

interface RawAnswer {
  statusCode: number
  headers: Record<string, string>
  body: string
}

/**
 * Sends bytes (without half-closing: Node's server drops pending requests on a
 * client FIN), reads until the server closes (`connection: close`) or 5 s, and
 * parses the first final answer.
 */
function exchange (port: number, bytes: Buffer): Promise<RawAnswer | string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const socket = connect(port, '127.0.0.1', () => { socket.write(bytes) })
    const timer = setTimeout(() => { socket.destroy(); finish('no complete answer within 5 s') }, 5000)
    let done = false
    function finish (problem?: string): void {
      if (done) return
      done = true
      clearTimeout(timer)
      const received = Buffer.concat(chunks)
      if (problem !== undefined) return resolve(`${problem}; got ${JSON.stringify(received.toString('latin1', 0, 300))}`)
      // Interim answers (100 Continue to `Expect: 100-continue`) come before the final one (RFC 9110 15.2).
      let text = received.toString('latin1') // one character per byte: string offsets are byte offsets
      while (/^HTTP\/1\.[01] 1\d\d /.test(text) && text.includes('\r\n\r\n')) text = text.slice(text.indexOf('\r\n\r\n') + 4)
      const end = text.indexOf('\r\n\r\n')
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)
      if (end === -1 || status === null) return resolve(`no HTTP answer: ${JSON.stringify(text.slice(0, 300))}`)
      const headers: Record<string, string> = {}
      for (const line of text.slice(0, end).split('\r\n').slice(1)) {
        const colon = line.indexOf(':')
        const name = line.slice(0, colon).trim().toLowerCase()
        headers[name] = name in headers ? `${headers[name]}, ${line.slice(colon + 1).trim()}` : line.slice(colon + 1).trim()
      }
      let rest = Buffer.from(text.slice(end + 4), 'latin1')
      if (headers['content-length'] !== undefined) rest = rest.subarray(0, Number(headers['content-length']))
      else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
        const parts: Buffer[] = []
        let at = 0
        for (;;) {
          const lineEnd = rest.indexOf('\r\n', at)
          const size = parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16)
          if (lineEnd === -1 || !(size > 0)) break
          parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size))
          at = lineEnd + 2 + size + 2
        }
        rest = Buffer.concat(parts)
      }
      resolve({ statusCode: Number(status[1]), headers, body: rest.toString('utf8') })
    }
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('close', () => finish())
    socket.on('error', (error) => { if (chunks.length === 0) finish(`socket error ${error.message}`) })
  })
}

t.test('fuzzed headers', async (t) => {
  announceSeed(t)
  const fx = await startFuzzGateway(t)

  t.test('with inject: oversized, repeated, malformed Authorization, odd content types, weird content-length', async (t) => {
    const tally = new StatusTally()
    await fc.assert(fc.asyncProperty(headerCaseArb(fx), async (c) => {
      await sendChecked(fx, requestOf(fx, c), tally)
    }), fuzzParameters(2000))
    t.comment(`${tally.total} requests, by status: ${tally}`)
    t.ok(prototypeIntact(), 'Object.prototype untouched')
  })

  t.test('over a real socket: the same, with Node\'s header size limit and HTTP parser in front', async (t) => {
    const address = await fx.app.listen({ host: '127.0.0.1', port: 0 })
    const port = Number(new URL(address).port)
    const tally = new StatusTally()
    await fc.assert(fc.asyncProperty(rawCaseArb(fx), async (c) => {
      keepLeakCaptureDir()
      const request = rawRequestOf(fx, c)
      const calls = fx.upstream.simulator.calls
      const before = { create: calls.create, task: calls.task }
      const answer = await exchange(port, request.bytes)
      const head = request.bytes.subarray(0, 600).toString('utf8')
      if (typeof answer === 'string') throw new Error(`${answer}\n  request (${request.bytes.length} bytes): ${JSON.stringify(head)}`)
      tally.add(answer.statusCode)
      const problems = answerProblems(request, answer, before, { create: calls.create, task: calls.task })
      if (problems.length > 0) {
        throw new Error(`${problems.join('; ')}\n  request (${request.bytes.length} bytes): ${JSON.stringify(head)}\n  answer: ${answer.statusCode} ${JSON.stringify(answer.headers)} ${answer.body.slice(0, 300)}`)
      }
    }), fuzzParameters(200))
    t.comment(`${tally.total} requests, by status: ${tally}`)
  })
})
