import { fstatSync, write as fsWrite } from 'node:fs'
import { Socket } from 'node:net'

/**
 * Where the log lines go (pino's destination): lossy by design, so that a
 * reader that stops reading (a full pipe) or goes away (`| head -n 2`, EPIPE)
 * can never stop the gateway serving or shutting down. Lines wait in a bounded
 * buffer and go out together, at most `batchMs` after the first of them (sooner
 * once `batchBytes` wait, or on a flush); past the bound, or once the output is
 * gone, they are dropped and counted.
 */
export interface LogDestination {
  /** pino writes each line here; never blocks, never throws */
  write (chunk: string): boolean
  /**
   * Resolves once what is buffered has been written, the output is gone, or
   * `timeoutMs` has passed (default 1000), whichever is first. For the end of
   * the process: it never blocks the event loop. (Not named `flush`: pino's
   * logger.flush(cb) would call it with a callback.)
   */
  flushWithin (options?: { timeoutMs?: number }): Promise<void>
  /** lines dropped so far (buffer full, or the output gone) */
  readonly droppedLines: number
  /** the output failed for good (EPIPE: the reader went away); everything since is dropped */
  readonly broken: boolean
}

interface Output {
  send (data: string, done: (error?: Error | null) => void): void
}

/**
 * Pipes and sockets through a libuv stream of their own: its writes are
 * non-blocking and queued on the event loop. A write through the thread pool to
 * a full blocking pipe would hold its thread, and process.exit waits for it.
 */
function streamOutput (fd: number): Output {
  const socket = new Socket({ fd, readable: false, writable: true })
  // The log must not keep the process alive, and a failed write is reported to the callback.
  socket.unref()
  socket.on('error', () => {})
  return { send (data, done) { socket.write(data, done) } }
}

/** Files (and terminals): asynchronous writes that a slow disk may delay, never block. */
function fileOutput (fd: number): Output {
  const send = (data: Buffer, done: (error?: Error | null) => void): void => {
    fsWrite(fd, data, 0, data.length, null, (error, written) => {
      if (error !== null) return done(error)
      if (written < data.length) return send(data.subarray(written), done)
      done()
    })
  }
  return { send (data, done) { send(Buffer.from(data), done) } }
}

function outputFor (fd: number): Output {
  const stats = fstatSync(fd)
  return stats.isFIFO() || stats.isSocket() ? streamOutput(fd) : fileOutput(fd)
}

/** How long a write that the output refused for now (EAGAIN) waits before it is tried again. */
const retryMs = 50

/**
 * Lines wait up to this long for others to share their write. One write per
 * event-loop turn carried a few lines each under load, and each write (a request
 * to libuv's thread pool for a file, a syscall for a pipe) cost more than the
 * lines' formatting: measured ~7 µs per request at 6,000 req/s (docs/benchmark.md).
 */
const defaultBatchMs = 10
/** ...or until about this much waits (UTF-16 units), whichever comes first. */
const defaultBatchBytes = 64 * 1024

export function createLogDestination (options: { fd: number, maxBufferedBytes: number, batchMs?: number, batchBytes?: number }): LogDestination {
  const output = outputFor(options.fd)
  const batchMs = options.batchMs ?? defaultBatchMs
  const batchBytes = Math.min(options.batchBytes ?? defaultBatchBytes, options.maxBufferedBytes)
  // Lengths in UTF-16 units: close to bytes for JSON lines, and free to compute.
  let buffered: string[] = []
  let bufferedLines = 0
  let bufferedLength = 0
  let inFlightLength = 0
  let writing = false
  let scheduled = false
  // The batch timer while one runs (null: nothing scheduled, or the send is already due this turn).
  let batchTimer: NodeJS.Timeout | null = null
  let broken = false
  let droppedLines = 0
  const idle = new Set<() => void>()

  function settle (): void {
    if (!broken && (writing || buffered.length > 0)) return
    for (const resolve of idle) resolve()
    idle.clear()
  }

  function goneForGood (): void {
    broken = true
    droppedLines += bufferedLines
    buffered = []
    bufferedLines = 0
    bufferedLength = 0
    settle()
  }

  function send (): void {
    scheduled = false
    if (batchTimer !== null) {
      clearTimeout(batchTimer)
      batchTimer = null
    }
    if (writing || broken || buffered.length === 0) return settle()
    const data = buffered.join('')
    const lines = bufferedLines
    buffered = []
    bufferedLines = 0
    bufferedLength = 0
    writing = true
    inFlightLength = data.length
    output.send(data, (error) => {
      writing = false
      inFlightLength = 0
      if (error !== undefined && error !== null) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') {
          buffered.unshift(data)
          bufferedLines += lines
          bufferedLength += data.length
          setTimeout(send, retryMs).unref()
          return
        }
        droppedLines += lines
        return goneForGood()
      }
      // A flush waits: the rest goes now (an unref'd immediate would wait for the loop's next event).
      if (buffered.length > 0 && idle.size > 0) send()
      else if (buffered.length > 0) schedule()
      else settle()
    })
  }

  /** The next send: this turn's end once a batch is full, else when the batch timer fires. */
  function schedule (): void {
    if (bufferedLength >= batchBytes) {
      if (scheduled && batchTimer === null) return
      if (batchTimer !== null) clearTimeout(batchTimer)
      batchTimer = null
      scheduled = true
      setImmediate(send).unref()
      return
    }
    if (scheduled) return
    scheduled = true
    batchTimer = setTimeout(send, batchMs).unref()
  }

  return {
    write (chunk) {
      if (broken || inFlightLength + bufferedLength + chunk.length > options.maxBufferedBytes) {
        droppedLines++
        return true
      }
      buffered.push(chunk)
      bufferedLines++
      bufferedLength += chunk.length
      if (!writing) schedule()
      return true
    },
    async flushWithin (flushOptions = {}) {
      if ((buffered.length === 0 && !writing) || broken) return
      await new Promise<void>((resolve) => {
        // Not unref'd: a process that waits for its log before exiting stays up until it is written (or the timeout).
        const timer = setTimeout(() => { idle.delete(done); resolve() }, flushOptions.timeoutMs ?? 1000)
        const done = (): void => { clearTimeout(timer); resolve() }
        idle.add(done)
        // Now, not at the turn's end: an unref'd immediate runs only after the loop's next event,
        // which a quiet process may not have before the timeout.
        if (!writing) send()
      })
    },
    get droppedLines () { return droppedLines },
    get broken () { return broken }
  }
}
