import t from 'tap'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { createLogDestination } from '../src/log-destination.ts'

// The pipe cases (a reader that never reads, one that goes away) are in test/server-log-output.test.ts, on a real process.

t.test('a file: every line, in order, once flushed', async (t) => {
  const file = join(t.testdir({}), 'log.ndjson')
  const fd = openSync(file, 'w')
  t.teardown(() => { closeSync(fd) })
  const destination = createLogDestination({ fd, maxBufferedBytes: 1 << 20 })
  const logger = pino({ base: null, timestamp: false }, destination)
  for (let index = 0; index < 1000; index++) logger.info({ index }, 'line')
  await destination.flushWithin({ timeoutMs: 10_000 })
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as { index: number })
  t.same(lines.map((line) => line.index), Array.from({ length: 1000 }, (_, index) => index))
  t.equal(destination.droppedLines, 0)
  t.equal(destination.broken, false)
})

t.test('past the buffer bound, lines are dropped and counted, never queued without end', async (t) => {
  const file = join(t.testdir({}), 'log.ndjson')
  const fd = openSync(file, 'w')
  t.teardown(() => { closeSync(fd) })
  const destination = createLogDestination({ fd, maxBufferedBytes: 1000 })
  // One synchronous burst: nothing can be written before it ends, so only the first 1000 characters fit.
  const line = 'x'.repeat(99) + '\n'
  for (let index = 0; index < 25; index++) t.equal(destination.write(line), true)
  t.equal(destination.droppedLines, 15)
  await destination.flushWithin({ timeoutMs: 10_000 })
  t.equal(readFileSync(file, 'utf8'), line.repeat(10), 'what fitted was written')
  destination.write(line)
  await destination.flushWithin({ timeoutMs: 10_000 })
  t.equal(readFileSync(file, 'utf8'), line.repeat(11), 'room again once written')
  t.equal(destination.droppedLines, 15)
})

t.test('a flush with nothing buffered resolves at once', async (t) => {
  const fd = openSync(join(t.testdir({}), 'log.ndjson'), 'w')
  t.teardown(() => { closeSync(fd) })
  const destination = createLogDestination({ fd, maxBufferedBytes: 1000 })
  await destination.flushWithin({ timeoutMs: 60_000 })
  t.pass('resolved')
})

t.test('lines wait for others up to batchMs, then go out together without a flush', async (t) => {
  const file = join(t.testdir({}), 'log.ndjson')
  const fd = openSync(file, 'w')
  t.teardown(() => { closeSync(fd) })
  const destination = createLogDestination({ fd, maxBufferedBytes: 1 << 20, batchMs: 200 })
  destination.write('one\n')
  await new Promise((resolve) => setTimeout(resolve, 20))
  destination.write('two\n')
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(readFileSync(file, 'utf8'), '', 'nothing written before the batch time')
  const deadline = Date.now() + 5000
  while (readFileSync(file, 'utf8') === '' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(readFileSync(file, 'utf8'), 'one\ntwo\n', 'both lines in one batch, by the timer alone')
})

t.test('a full batch goes out at once, without waiting for the batch time', async (t) => {
  const file = join(t.testdir({}), 'log.ndjson')
  const fd = openSync(file, 'w')
  t.teardown(() => { closeSync(fd) })
  const destination = createLogDestination({ fd, maxBufferedBytes: 1 << 20, batchMs: 60_000, batchBytes: 100 })
  const line = 'x'.repeat(49) + '\n'
  destination.write(line)
  destination.write(line)
  const deadline = Date.now() + 5000
  while (readFileSync(file, 'utf8') === '' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(readFileSync(file, 'utf8'), line.repeat(2), 'written long before the minute the timer would take')
  // The next, smaller batch waits for its timer again, and a flush sends it now.
  destination.write('tail\n')
  await new Promise((resolve) => setTimeout(resolve, 30))
  t.equal(readFileSync(file, 'utf8'), line.repeat(2), 'a short batch waits')
  await destination.flushWithin({ timeoutMs: 5000 })
  t.equal(readFileSync(file, 'utf8'), line.repeat(2) + 'tail\n', 'a flush does not wait for the timer')
})
