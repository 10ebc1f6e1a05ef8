import t from 'tap'
import { Writable } from 'node:stream'
import Fastify, { LogController } from 'fastify'
import { pino } from 'pino'
import { lazyRequestLogger, requestIdLogLabel } from '../src/logger.ts'

function capture (): { stream: Writable, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      callback()
    }
  })
  return { stream, lines }
}

// As app.ts sets it up: the child of request.log (the request id bound) is made lazily.
t.test('request.log binds the request id when used, at every level, and its children too', async (t) => {
  const { stream, lines } = capture()
  const app = Fastify({ loggerInstance: pino({ level: 'trace', base: null, timestamp: false }, stream), childLoggerFactory: lazyRequestLogger, genReqId: () => 'req-1', logController: new LogController({ disableRequestLogging: true, requestIdLogLabel }) })
  t.teardown(async () => { await app.close() })
  app.get('/', async (request) => {
    t.equal(request.log.level, 'trace', 'the level is the parent\'s before anything is logged')
    request.log.trace('t')
    request.log.debug({ n: 1 }, 'd')
    request.log.info('i')
    request.log.warn('w')
    request.log.error('e')
    request.log.fatal('f')
    request.log.silent('s')
    request.log.child({ part: 'x' }).info('from a child')
    request.log.level = 'error'
    request.log.info('not logged: the level was raised')
    t.equal(request.log.level, 'error')
    return { ok: true }
  })
  const response = await app.inject('/')
  t.equal(response.statusCode, 200)
  t.same(lines, [
    { level: 10, [requestIdLogLabel]: 'req-1', msg: 't' },
    { level: 20, [requestIdLogLabel]: 'req-1', n: 1, msg: 'd' },
    { level: 30, [requestIdLogLabel]: 'req-1', msg: 'i' },
    { level: 40, [requestIdLogLabel]: 'req-1', msg: 'w' },
    { level: 50, [requestIdLogLabel]: 'req-1', msg: 'e' },
    { level: 60, [requestIdLogLabel]: 'req-1', msg: 'f' },
    { level: 30, [requestIdLogLabel]: 'req-1', part: 'x', msg: 'from a child' }
  ])
})
